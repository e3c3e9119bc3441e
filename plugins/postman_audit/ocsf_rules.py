"""Which OCSF 1.5.0 class and activity each Postman audit action becomes: the rules, in order.

The first rule whose pattern (``fnmatch``, on the whole action) matches wins; the last one
matches everything, so every action, even one nobody has seen yet, has a class. An activity
is either fixed or read from the action's first verb (``team.customauth.enable`` → Enable);
an action with no verb the rule knows gets 99, and 99 always carries the raw action in
``activity_name``. ``mapping_table()`` writes the rules as the Markdown table of the
Postman README (a test holds the two equal).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["ENTITY_NAME_KEYS", "GROUP_KEYS", "KNOWN_ACTIONS", "OCSF_VERSION", "ROLE_KEYS", "RULES",
           "TEAM_ENTITY", "Plan", "Rule", "mapping_table", "plan", "planned"]

OCSF_VERSION = "1.5.0"
CATEGORY = (3, "Identity & Access Management")

ACCOUNT_CHANGE, AUTHENTICATION, ENTITY_MANAGEMENT = 3001, 3002, 3004
USER_ACCESS, GROUP_MANAGEMENT = 3005, 3006

CLASS_NAMES: Mapping[int, str] = {
    ACCOUNT_CHANGE: "Account Change",
    AUTHENTICATION: "Authentication",
    ENTITY_MANAGEMENT: "Entity Management",
    USER_ACCESS: "User Access Management",
    GROUP_MANAGEMENT: "Group Management",
}

# The captions of OCSF 1.5.0's activity_id values for each class (held to the schema by a test).
ACTIVITIES: Mapping[int, Mapping[int, str]] = {
    ACCOUNT_CHANGE: {1: "Create", 2: "Enable", 3: "Password Change", 4: "Password Reset",
                     5: "Disable", 6: "Delete", 7: "Attach Policy", 8: "Detach Policy",
                     9: "Lock", 10: "MFA Factor Enable", 11: "MFA Factor Disable",
                     12: "Unlock", 99: "Other"},
    AUTHENTICATION: {1: "Logon", 2: "Logoff", 99: "Other"},
    ENTITY_MANAGEMENT: {1: "Create", 2: "Read", 3: "Update", 4: "Delete", 5: "Move",
                        8: "Enable", 9: "Disable", 10: "Activate", 11: "Deactivate",
                        12: "Suspend", 13: "Resume", 99: "Other"},
    USER_ACCESS: {1: "Assign Privileges", 2: "Revoke Privileges", 99: "Other"},
    GROUP_MANAGEMENT: {1: "Assign Privileges", 2: "Revoke Privileges", 3: "Add User",
                       4: "Remove User", 5: "Delete", 6: "Create", 99: "Other"},
}

# Every action Postman is known to emit: its /audit-actions example, its response examples,
# the real sample, the 2019 documentation, and a public script (see the README's sources).
KNOWN_ACTIONS: tuple[str, ...] = (
    "user.mfa_disabled", "user.mfa_enabled", "user.mfa_rotate_recovery_codes", "user.mfa_reset",
    "user.apikey_activate", "team.scimkey_activate", "team.add_partnership_member",
    "team.add_credits", "team.custom_token.create", "team.add_domain",
    "team.add_group_manager", "team.add_group_member", "team.add_group_role",
    "team.add_member", "team.domain_capture_add_user",
    "user.login_google_success", "user.login_password_success", "user.login_sso_success",
    "team.update_user_roles", "team.scim_add_member", "user.authaccount.linked",
    "admin.apikey_create", "user.apikey_create", "user.authenticate_third_party_app",
    "team.add_card", "team.delete_card", "team.delete_domain", "team.cancel_invite",
    "team.customauth.create", "team.customauth.disable", "team.customauth.enable",
    "team.customauth.remove", "team.customauth.update", "team.decrease_size",
    "team.increase_size", "team.modify_future_plan", "team.name_updated",
    "team.remove_member", "team.retry_invoice_success", "team.send_invite",
    "team.start_enterprise", "team.update_domain_verification",
)

_IRREGULAR = {"send": ("sent",), "leave": ("left",), "set": (),
              "cancel": ("cancelled", "canceled"), "modify": ("modified",),
              "verify": ("verified",)}


def _past(verb: str) -> tuple[str, ...]:
    """The past forms of ``verb`` as actions spell them (``name_updated``)."""
    if verb in _IRREGULAR:
        return _IRREGULAR[verb]
    return (verb + "d",) if verb.endswith("e") else (verb + "ed",)


@dataclass(frozen=True)
class Verbs:
    """An activity read from the action's words: the first word (past the prefix) that is
    one of these verbs, or its past form, gives the activity; none gives 99."""

    by_activity: tuple[tuple[int, tuple[str, ...]], ...]

    @property
    def table(self) -> dict[str, int]:
        """Each verb and past form → its activity id."""
        return {word: activity for activity, verbs in self.by_activity
                for verb in verbs for word in (verb, *_past(verb))}

    def words(self, class_uid: int) -> str:
        """The table in words, for the README: ``add, join → 3 Add User; …; else 99``."""
        parts = [f"{', '.join(verbs)} → {activity} {ACTIVITIES[class_uid][activity]}"
                 for activity, verbs in self.by_activity]
        return "by verb: " + "; ".join(parts) + "; else 99 Other"


_ENTITY_VERBS = Verbs((
    (1, ("create", "add", "send")), (2, ("download", "view")),
    (3, ("update", "edit", "change", "modify", "increase", "decrease", "rename", "approve",
         "reject", "verify", "regenerate", "set")),
    (4, ("delete", "remove", "cancel", "revoke")), (5, ("move",)), (8, ("enable",)),
    (9, ("disable",)), (10, ("activate",)), (11, ("deactivate",)), (12, ("suspend",)),
    (13, ("resume",)),
))
_ACCOUNT_VERBS = Verbs(((1, ("create",)), (2, ("enable",)), (5, ("disable",)),
                        (6, ("delete",)), (9, ("lock",)), (12, ("unlock",))))
_MEMBER_VERBS = Verbs(((3, ("add", "join", "provision")),
                       (4, ("remove", "leave", "deprovision"))))
_GROUP_VERBS = Verbs(((3, ("add",)), (4, ("remove",)), (5, ("delete",)), (6, ("create",))))
_ROLE_VERBS = Verbs(((1, ("add", "assign", "grant")), (2, ("remove", "revoke"))))


@dataclass(frozen=True)
class Rule:
    """Actions matching ``patterns`` become ``class_uid`` events, built by ``builder``.

    ``activity`` is fixed (an int) or read from the action's verb (``Verbs``). ``fields``
    says in words what the class-specific fields hold (the README table shows it)."""

    patterns: tuple[str, ...]
    class_uid: int
    activity: int | Verbs
    builder: str
    fields: str
    status_id: int = 1
    options: Mapping[str, str] = field(default_factory=dict)

    def matches(self, action: str) -> bool:
        """True when one of the patterns matches the whole action."""
        return any(fnmatch.fnmatchcase(action, p) for p in self.patterns)


# Words in an action → the kind of entity it manages (the first found wins); else the team.
ENTITY_TYPES: tuple[tuple[str, str], ...] = (
    ("customauth", "SSO Configuration"), ("sso", "SSO Configuration"),
    ("scimkey", "SCIM Key"), ("scim", "SCIM Configuration"), ("domain", "Domain"),
    ("invite", "Invite"), ("join_request", "Join Request"), ("card", "Payment Method"),
    ("payment", "Payment Method"), ("invoice", "Invoice"), ("custom_token", "Custom Alert"),
    ("alert", "Custom Alert"), ("export", "Data Export"), ("billing", "Billing"),
    ("plan", "Plan"), ("size", "Plan"), ("enterprise", "Plan"), ("credits", "Credits"),
    ("workspace", "Workspace"),
)
TEAM_ENTITY = ("Team", 4)  # OCSF managed_entity type_id 4: Organization
_PROTOCOLS = {"google": (6, "OAUTH 2.0"), "password": (99, "Password"), "sso": (99, "SSO")}
_ENTITY_WORDS = ", ".join(f"{word} → {kind}" for word, kind in ENTITY_TYPES)
_PROTOCOL_WORDS = ", ".join(f"{method}: {name}" for method, (_, name) in _PROTOCOLS.items())
# The data.variables keys read for a group, its roles, and an entity's name.
GROUP_KEYS: tuple[tuple[str, str], ...] = (("groupId", "uid"), ("groupName", "name"))
ROLE_KEYS = ("role", "roles", "roleName")
ENTITY_NAME_KEYS = ("name", "domain", "domainName", "email", "groupName")
_GROUP = ("group ← data.variables (" + ", ".join(f"{k} → {f}" for k, f in GROUP_KEYS)
          + "; type Group), else the team (type Team)")
_USER = "user ← data.user, else the actor"
RULES: tuple[Rule, ...] = (
    Rule(("*login*fail*",), AUTHENTICATION, 1, "authentication",
         f"{_USER}; service Postman; status Failure", status_id=2),
    Rule(("user.login_*",), AUTHENTICATION, 1, "authentication",
         f"{_USER}; service Postman; auth_protocol from the method ({_PROTOCOL_WORDS}, "
         "else the method's own word)", options={"protocol": "method"}),
    Rule(("*logout*", "*session*revoke*"), AUTHENTICATION, 2, "authentication",
         f"{_USER}; service Postman"),
    Rule(("user.authenticate_third_party_app",), AUTHENTICATION, 1, "authentication",
         f"{_USER}; service ← data.variables.appName", options={"service": "appName"}),
    Rule(("user.mfa_enabled",), ACCOUNT_CHANGE, 10, "account", _USER),
    Rule(("user.mfa_disabled", "user.mfa_reset"), ACCOUNT_CHANGE, 11, "account", _USER),
    Rule(("*password*reset*", "*reset*password*"), ACCOUNT_CHANGE, 4, "account", _USER),
    Rule(("*password*",), ACCOUNT_CHANGE, 3, "account", _USER),
    Rule(("*apikey*",), ACCOUNT_CHANGE, 99, "account",
         f"{_USER}; user.credential_uid ← data.variables.apiKey (masked by Postman)",
         options={"credential": "apiKey"}),
    Rule(("team.update_user_roles",), USER_ACCESS, 99, "user_access",
         "one event per user in data.variables.users (a JSON text or an object): user.uid ← "
         "its key, privileges ← its roles (the set after the change); metadata.uid ← "
         "id:user, metadata.correlation_uid ← id"),
    Rule(("*group_role*",), GROUP_MANAGEMENT, _ROLE_VERBS, "group",
         f"{_GROUP}; privileges ← data.variables ({', '.join(ROLE_KEYS)}); user ← data.user",
         options={"group": "variables", "privileges": "variables"}),
    Rule(("*group_manager*",), GROUP_MANAGEMENT, 99, "group",
         f"{_GROUP}; user ← data.user",
         options={"group": "variables"}),
    Rule(("*group_member*",), GROUP_MANAGEMENT, _MEMBER_VERBS, "group",
         f"{_GROUP}; user ← data.user",
         options={"group": "variables"}),
    Rule(("team.*group*",), GROUP_MANAGEMENT, _GROUP_VERBS, "group",
         f"{_GROUP}; user ← data.user",
         options={"group": "variables"}),
    Rule(("team.*member*", "team.*_user", "team.*provision*"), GROUP_MANAGEMENT,
         _MEMBER_VERBS, "group", "group ← the team (type Team); user ← data.user"),
    Rule(("user.*",), ACCOUNT_CHANGE, _ACCOUNT_VERBS, "account", _USER),
    Rule(("*",), ENTITY_MANAGEMENT, _ENTITY_VERBS, "entity",
         f"entity.type ← the first of these words in the action: {_ENTITY_WORDS}, with "
         f"type_id 99 Other and entity.name ← the first of data.variables "
         f"({', '.join(ENTITY_NAME_KEYS)}); else the team itself (type Team, type_id 4 "
         "Organization, uid and name the team's); entity.org ← the team; entity.user ← "
         "data.user; entity.data ← data.variables"),
)


@dataclass(frozen=True)
class Plan:
    """What one action becomes: its rule, class, activity, the names OCSF gives them, the
    fields every event of the action holds alike (``fixed``), and for Entity Management the
    kind of entity the action names (``entity``: its type and ``type_id``)."""

    rule: Rule
    class_uid: int
    class_name: str
    activity_id: int
    activity_name: str
    type_uid: int
    type_name: str
    status_id: int
    status: str
    fixed: Mapping[str, object]
    entity: tuple[str, int]

    @property
    def head(self) -> dict[str, object]:
        """The fields every event of this action holds alike, as one mapping to copy."""
        return {
            "class_uid": self.class_uid, "class_name": self.class_name,
            "category_uid": CATEGORY[0], "category_name": CATEGORY[1],
            "activity_id": self.activity_id, "activity_name": self.activity_name,
            "type_uid": self.type_uid, "type_name": self.type_name,
            "severity_id": 1, "severity": "Informational",
            "status_id": self.status_id, "status": self.status, "timezone_offset": 0,
            **self.fixed,
        }


_METHOD = re.compile(r"user\.login_(.+?)(?:_success)?")


_WORDS = re.compile(r"[a-z0-9]+")
_PLANS: dict[str, tuple[Plan, dict[str, object]]] = {}


def plan(action: str) -> Plan:
    """The class and activity of ``action``."""
    return planned(action)[0]


def planned(action: str) -> tuple[Plan, dict[str, object]]:
    """The plan of ``action`` and its ``head`` (remembered: actions repeat). The head is
    shared: copy it."""
    found = _PLANS.get(action)
    if found is None:
        if len(_PLANS) >= 4096:  # a stream of made-up actions cannot grow it without bound
            _PLANS.clear()
        made = _plan(action)
        found = _PLANS[action] = (made, made.head)
    return found


def _plan(action: str) -> Plan:
    rule = next(r for r in RULES if r.matches(action))
    activity = rule.activity
    if isinstance(activity, Verbs):
        table = activity.table
        words = _WORDS.findall(action.lower())
        activity = next((table[w] for w in words[1:] if w in table), 99)
    class_name = CLASS_NAMES[rule.class_uid]
    caption = ACTIVITIES[rule.class_uid][activity]
    fixed: dict[str, object] = {}
    if rule.options.get("protocol") == "method" and (found := _METHOD.fullmatch(action)):
        protocol_id, protocol = _PROTOCOLS.get(found.group(1), (99, found.group(1)))
        fixed.update(auth_protocol_id=protocol_id, auth_protocol=protocol)
    lowered = action.lower()
    entity = next(((kind, 99) for word, kind in ENTITY_TYPES if word in lowered), TEAM_ENTITY)
    return Plan(rule, rule.class_uid, class_name, activity,
                action if activity == 99 else caption, rule.class_uid * 100 + activity,
                f"{class_name}: {caption}", rule.status_id,
                "Success" if rule.status_id == 1 else "Failure", fixed, entity)


def _activity_words(rule: Rule) -> str:
    if isinstance(rule.activity, int):
        return f"{rule.activity} {ACTIVITIES[rule.class_uid][rule.activity]}"
    return rule.activity.words(rule.class_uid)


def mapping_table() -> str:
    """The rules as the Markdown table of the Postman README, with the known actions each
    one takes."""
    lines = ["| # | action (pattern) | class | activity | fields | known actions |",
             "|---|---|---|---|---|---|"]
    taken: dict[int, list[str]] = {}
    for action in sorted(KNOWN_ACTIONS):
        taken.setdefault(RULES.index(plan(action).rule), []).append(f"`{action}`")
    for index, rule in enumerate(RULES, 1):
        patterns = ", ".join(f"`{p}`" for p in rule.patterns)
        cls = f"{rule.class_uid} {CLASS_NAMES[rule.class_uid]}"
        known = ", ".join(taken.get(index - 1, [])) or "—"
        lines.append(f"| {index} | {patterns} | {cls} | {_activity_words(rule)} | "
                     f"{rule.fields} | {known} |")
    return "\n".join(lines)
