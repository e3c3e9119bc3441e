"""The Postman audit-log input for plugin-host (``input.type: postman_audit``).

Reaches the host through the ``plugin_host`` entry point ``postman_audit.plugin``, like
any third-party input.
"""

__version__ = "0.1.0"
