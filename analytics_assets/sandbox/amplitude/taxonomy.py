"""The Taxonomy API (``/api/2/taxonomy/...``): the project's tracking plan.

Seeded from the events and user properties the project actually sends (so every
seeded item is ``live``); items created through the API are ``planned``. Deleting
follows the documented table: live -> marked deleted (restorable), planned ->
removed, deleted or missing -> error; Amplitude's own user properties cannot be
deleted. Writes are form-encoded, as the real API takes them.

The HTTP side (form parsing, limits, routes) is in ``taxonomy_routes.py``.

Status codes follow the public docs per resource: a missing item read by name is a
400 ``Not found`` (404 for user properties), writes on a missing item are 409 with
the live ``Attempted to operate on entity ...`` wording, duplicates are 409, a
missing or bad parameter is 400, and delete/restore of a missing item is 404.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from analytics_assets.sandbox.amplitude.extra_common import truthy

PROPERTY_TYPES = ("string", "number", "boolean", "enum", "any")
CLASSIFICATIONS = ("PII", "SENSITIVE", "REVENUE")
CUSTOM_USER_PREFIX = "gp:"
CUSTOM_GROUP_PREFIX = "grp:"
# Amplitude's own user properties: listed, readable, never deletable or renamable.
AMPLITUDE_USER_PROPERTIES = (
    "amplitude_id",
    "user_id",
    "device_id",
    "platform",
    "os",
    "version",
    "start_version",
    "country",
    "region",
    "city",
    "dma",
    "language",
    "device",
    "device_type",
    "carrier",
    "library",
    "paying",
    "location_lat",
    "location_lng",
    "session_id",
    "event_id",
    "server_upload_time",
)
FIRST_CATEGORY_ID = 412931


class TaxonomyError(Exception):
    """A failed taxonomy request: status and the message for ``errors[0]``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _not_found(status: int = 400) -> TaxonomyError:
    return TaxonomyError(status, "Not found")


@dataclass(frozen=True)
class TaxonomySeed:
    """What the project's data already shows: event types, their properties, user props."""

    event_types: tuple[tuple[str, str, tuple[str, ...]], ...]  # (type, category, props)
    shared_event_properties: tuple[str, ...]
    user_properties: tuple[str, ...]  # custom ones, without the gp: prefix
    group_types: tuple[str, ...] = ("account",)
    group_properties: tuple[str, ...] = ()


# ----- the store -------------------------------------------------------------------------


def _bool_field(form: dict[str, str], name: str, current: bool) -> bool:
    return truthy(form.get(name), current) if name in form else current


def _property_fields(form: dict[str, str], item: dict[str, Any]) -> None:
    """Apply the writable property fields shared by event, user and group properties."""
    if "description" in form:
        item["description"] = form["description"]
    if "type" in form:
        kind = form["type"].strip().lower()
        if kind not in PROPERTY_TYPES:
            raise TaxonomyError(
                400, f"Invalid type {form['type']!r}; use one of {', '.join(PROPERTY_TYPES)}"
            )
        item["type"] = kind
    if "regex" in form:
        item["regex"] = form["regex"] or None
    if "enum_values" in form:
        item["enum_values"] = form["enum_values"] or None
    item["is_array_type"] = _bool_field(form, "is_array_type", item["is_array_type"])
    item["is_hidden"] = _bool_field(form, "is_hidden", item["is_hidden"])
    if "classifications" in form:
        values = [v.strip().upper() for v in form["classifications"].split(",") if v.strip()]
        bad = [v for v in values if v not in CLASSIFICATIONS]
        if bad:
            raise TaxonomyError(400, f"Invalid classifications {bad}; use PII, SENSITIVE, REVENUE")
        item["classifications"] = values


def _new_property() -> dict[str, Any]:
    return {
        "description": None,
        "type": None,
        "regex": None,
        "enum_values": None,
        "is_array_type": False,
        "is_hidden": False,
        "classifications": [],
    }


def _required(form: dict[str, str], name: str) -> str:
    value = form.get(name, "").strip()
    if not value:
        raise TaxonomyError(400, f"Missing required parameter: {name}")
    return value


def user_property_key(name: str) -> str:
    """Custom user properties carry ``gp:`` in responses and paths; built-ins do not."""
    if name.startswith(CUSTOM_USER_PREFIX) or name in AMPLITUDE_USER_PROPERTIES:
        return name
    return CUSTOM_USER_PREFIX + name


def group_property_key(name: str) -> str:
    return name if name.startswith(CUSTOM_GROUP_PREFIX) else CUSTOM_GROUP_PREFIX + name


class TaxonomyStore:
    """One project's tracking plan (thread-safe; every method takes the lock)."""

    def __init__(self, seed: TaxonomySeed) -> None:
        self._lock = threading.RLock()
        self.categories: dict[int, str] = {}
        self._next_category = FIRST_CATEGORY_ID
        self.events: dict[str, dict[str, Any]] = {}
        self._removed: set[str] = set()  # planned events deleted by the API
        self.event_props: dict[tuple[str, str], dict[str, Any]] = {}  # ("" = shared, name)
        self.user_props: dict[str, dict[str, Any]] = {}
        self.group_types = set(seed.group_types)
        self.group_props: dict[tuple[str, str], dict[str, Any]] = {}
        for event_type, category, props in seed.event_types:
            self._add_event(event_type, {"category": category}, state="live")
            for prop in props:
                self.event_props[(event_type, prop)] = self._prop_record(event_type, prop, "live")
        for prop in seed.shared_event_properties:
            self.event_props[("", prop)] = self._prop_record("", prop, "live")
        for name in AMPLITUDE_USER_PROPERTIES:
            self.user_props[name] = {
                **_new_property(),
                "user_property": name,
                "_state": "live",
                "_builtin": True,
            }
        for name in seed.user_properties:
            key = user_property_key(name)
            self.user_props[key] = {**_new_property(), "user_property": key, "_state": "live"}
        for group_type in seed.group_types:
            for name in seed.group_properties:
                key = group_property_key(name)
                self.group_props[(group_type, key)] = {
                    **_new_property(),
                    "group_type": group_type,
                    "group_property": key,
                    "_state": "live",
                }

    # ----- categories ---------------------------------------------------------------------

    def _category_id(self, name: str) -> int | None:
        return next((cid for cid, cname in self.categories.items() if cname == name), None)

    def _ensure_category(self, name: str) -> None:
        # Naming a category that does not exist yet creates it, as the web app does when
        # an event is filed under a new category (INFERRED; the docs do not say).
        if name and self._category_id(name) is None:
            self.categories[self._next_category] = name
            self._next_category += 10

    def create_category(self, form: dict[str, str]) -> None:
        name = _required(form, "category_name")
        with self._lock:
            if self._category_id(name) is not None:
                raise TaxonomyError(
                    409, f'Attempted to add a category, "{name}", that already exists.'
                )
            self._ensure_category(name)

    def list_categories(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{"id": cid, "name": name} for cid, name in self.categories.items()]

    def get_category(self, name: str) -> dict[str, Any]:
        with self._lock:
            cid = self._category_id(name)
            if cid is None:
                raise _not_found()
            return {"id": cid, "name": name}

    def _category_by_id(self, raw_id: str) -> int:
        try:
            cid = int(raw_id)
        except ValueError:
            cid = -1
        if cid not in self.categories:
            raise TaxonomyError(
                409,
                f"Attempted to operate on entity event_category, id "
                f'"{raw_id}", that does not exist.',
            )
        return cid

    def update_category(self, raw_id: str, form: dict[str, str]) -> None:
        name = _required(form, "category_name")
        with self._lock:
            cid = self._category_by_id(raw_id)
            other = self._category_id(name)
            if other is not None and other != cid:
                raise TaxonomyError(
                    409, f'Attempted to rename a category to "{name}", which already exists.'
                )
            old = self.categories[cid]
            self.categories[cid] = name
            for event in self.events.values():
                if event["category"] == old:
                    event["category"] = name

    def delete_category(self, raw_id: str) -> None:
        with self._lock:
            cid = self._category_by_id(raw_id)
            old = self.categories.pop(cid)
            for event in self.events.values():
                if event["category"] == old:
                    event["category"] = None

    # ----- event types --------------------------------------------------------------------

    def observe(self, event_types: Iterable[str]) -> None:
        """Event types first seen in ingested data join the plan as live (unplanned)."""
        with self._lock:
            for name in event_types:
                if name not in self.events and name not in self._removed:
                    self._add_event(name, {}, state="live")

    def _add_event(self, event_type: str, form: dict[str, str], state: str) -> None:
        category = form.get("category") or None
        if category:
            self._ensure_category(category)
        event = {
            "event_type": event_type,
            "category": category,
            "description": None,
            "display_name": None,
            "tags": [],
            "is_active": True,
            "owner": None,
            "is_hidden_from_dropdowns": False,
            "is_hidden_from_persona_results": False,
            "is_hidden_from_pathfinder": False,
            "is_hidden_from_timeline": False,
            "_state": state,
        }
        self._apply_event_fields(event, form)
        self.events[event_type] = event

    def _apply_event_fields(self, event: dict[str, Any], form: dict[str, str]) -> None:
        if form.get("category"):
            self._ensure_category(form["category"])
            event["category"] = form["category"]
        for name in ("description", "display_name", "owner"):
            if name in form:
                event[name] = form[name] or None
        if "tags" in form:
            event["tags"] = [t.strip() for t in form["tags"].split(",") if t.strip()]
        for name in (
            "is_active",
            "is_hidden_from_dropdowns",
            "is_hidden_from_persona_results",
            "is_hidden_from_pathfinder",
            "is_hidden_from_timeline",
        ):
            event[name] = _bool_field(form, name, event[name])

    @staticmethod
    def _event_view(event: dict[str, Any]) -> dict[str, Any]:
        view = {k: v for k, v in event.items() if not k.startswith("_")}
        view["category"] = {"name": event["category"]} if event["category"] else None
        view["deleted"] = event["_state"] == "deleted"
        return view

    def create_event(self, form: dict[str, str]) -> None:
        event_type = _required(form, "event_type")
        with self._lock:
            if event_type in self.events:
                raise TaxonomyError(
                    409, f'Attempted to add an event type, "{event_type}", that already exists.'
                )
            self._add_event(event_type, form, state="planned")
            self._removed.discard(event_type)

    def list_events(self, show_deleted: bool) -> list[dict[str, Any]]:
        with self._lock:
            return [
                self._event_view(e)
                for e in self.events.values()
                # Hidden events (visibility other than "Visible") are left out, per the docs.
                if (show_deleted or e["_state"] != "deleted") and not e["is_hidden_from_dropdowns"]
            ]

    def get_event(self, event_type: str) -> dict[str, Any]:
        with self._lock:
            event = self.events.get(event_type)
            if event is None or event["_state"] == "deleted":
                raise _not_found()
            return self._event_view(event)

    def update_event(self, event_type: str, form: dict[str, str]) -> None:
        with self._lock:
            event = self.events.get(event_type)
            if event is None or event["_state"] == "deleted":
                raise TaxonomyError(
                    409,
                    f'Attempted to update event "{event_type}", but the event is not in schema.',
                )
            new_name = form.get("new_event_type", "").strip()
            if new_name and new_name != event_type and new_name in self.events:
                raise TaxonomyError(
                    409,
                    f'Attempted to rename event "{event_type}" to '
                    f'"{new_name}", which already exists.',
                )
            self._apply_event_fields(event, form)
            if new_name and new_name != event_type:
                self.events = {
                    (new_name if k == event_type else k): v for k, v in self.events.items()
                }
                event["event_type"] = new_name
                self.event_props = {
                    ((new_name if et == event_type else et), p): {
                        **v,
                        "event_type": new_name if et == event_type else v["event_type"],
                    }
                    for (et, p), v in self.event_props.items()
                }

    def delete_event(self, event_type: str) -> None:
        with self._lock:
            event = self.events.get(event_type)
            if event is None:
                raise _not_found(404)
            if event["_state"] == "deleted":
                raise TaxonomyError(409, f'Event type "{event_type}" is already deleted.')
            if event["_state"] == "planned":
                del self.events[event_type]
                self._removed.add(event_type)
            else:
                event["_state"] = "deleted"

    def restore_event(self, event_type: str) -> None:
        with self._lock:
            event = self.events.get(event_type)
            if event is None:
                raise _not_found(404)
            if event["_state"] != "deleted":
                raise TaxonomyError(409, f'Event type "{event_type}" is not deleted.')
            event["_state"] = "live"

    # ----- event properties ---------------------------------------------------------------

    @staticmethod
    def _prop_record(event_type: str, name: str, state: str) -> dict[str, Any]:
        return {
            **_new_property(),
            "event_property": name,
            "event_type": event_type or None,
            "is_required": False,
            "_state": state,
        }

    @staticmethod
    def _prop_view(prop: dict[str, Any]) -> dict[str, Any]:
        view = {k: v for k, v in prop.items() if not k.startswith("_")}
        view["deleted"] = prop["_state"] == "deleted"
        return view

    def create_event_property(self, form: dict[str, str]) -> None:
        name = _required(form, "event_property")
        event_type = form.get("event_type", "").strip()
        with self._lock:
            if event_type and event_type not in self.events:
                raise _not_found(404)
            if (event_type, name) in self.event_props:
                where = f' for event "{event_type}"' if event_type else ""
                raise TaxonomyError(
                    409,
                    f'Attempted to add an event property, "{name}"{where}, that already exists.',
                )
            if event_type and form.get("classifications"):
                raise TaxonomyError(400, "Classifications can only be set on shared properties.")
            prop = self._prop_record(event_type, name, "planned")
            _property_fields(form, prop)
            prop["is_required"] = _bool_field(form, "is_required", False)
            self.event_props[(event_type, name)] = prop

    def list_event_properties(self, event_type: str) -> list[dict[str, Any]]:
        with self._lock:
            return [
                self._prop_view(p)
                for (et, _), p in self.event_props.items()
                if et == event_type and p["_state"] != "deleted"
            ]

    def _find_event_property(self, name: str, event_type: str) -> tuple[str, str]:
        """The override on ``event_type`` if there is one, else the shared property."""
        for key in ((event_type, name), ("", name)):
            if key in self.event_props:
                return key
        raise _not_found()

    def get_event_property(self, name: str, event_type: str) -> dict[str, Any]:
        with self._lock:
            key = self._find_event_property(name, event_type)
            prop = self.event_props[key]
            if prop["_state"] == "deleted":
                raise _not_found()
            return self._prop_view(prop)

    def update_event_property(self, name: str, form: dict[str, str]) -> None:
        event_type = form.get("event_type", "").strip()
        with self._lock:
            try:
                key = self._find_event_property(name, event_type)
            except TaxonomyError:
                raise TaxonomyError(
                    409,
                    f"Attempted to operate on entity event_property, id "
                    f'"{name}", that does not exist.',
                ) from None
            prop = self.event_props[key]
            new_name = form.get("new_event_property_value", "").strip()
            renamed = bool(new_name) and new_name != name
            if renamed and (key[0], new_name) in self.event_props:
                raise TaxonomyError(
                    409,
                    f'Attempted to rename event property "{name}" to '
                    f'"{new_name}", which already exists.',
                )
            _property_fields(form, prop)
            prop["is_required"] = _bool_field(form, "is_required", prop["is_required"])
            if renamed:
                prop["event_property"] = new_name
                self.event_props[(key[0], new_name)] = self.event_props.pop(key)

    def delete_event_property(self, name: str, event_type: str) -> None:
        with self._lock:
            key = (event_type, name)
            prop = self.event_props.get(key)
            if prop is None:
                raise _not_found(404)
            if prop["_state"] == "deleted":
                raise TaxonomyError(409, f'Event property "{name}" is already deleted.')
            if prop["_state"] == "planned":
                del self.event_props[key]
            else:
                prop["_state"] = "deleted"

    def restore_event_property(self, name: str, event_type: str) -> None:
        with self._lock:
            prop = self.event_props.get((event_type, name))
            if prop is None:
                raise _not_found(404)
            if prop["_state"] != "deleted":
                raise TaxonomyError(409, f'Event property "{name}" is not deleted.')
            prop["_state"] = "live"

    # ----- user properties ----------------------------------------------------------------

    @staticmethod
    def _user_view(prop: dict[str, Any]) -> dict[str, Any]:
        view = {k: v for k, v in prop.items() if not k.startswith("_")}
        view["deleted"] = prop["_state"] == "deleted"
        return view

    def create_user_property(self, form: dict[str, str]) -> None:
        key = user_property_key(_required(form, "user_property"))
        with self._lock:
            if key in self.user_props:
                raise TaxonomyError(
                    409, f'Attempted to add a user property, "{key}", that already exists.'
                )
            prop = {**_new_property(), "user_property": key, "_state": "planned"}
            _property_fields(form, prop)
            self.user_props[key] = prop

    def list_user_properties(self, show_deleted: bool) -> list[dict[str, Any]]:
        with self._lock:
            return [
                self._user_view(p)
                for p in self.user_props.values()
                if show_deleted or p["_state"] != "deleted"
            ]

    def get_user_property(self, name: str) -> dict[str, Any]:
        with self._lock:
            prop = self.user_props.get(user_property_key(name))
            if prop is None or prop["_state"] == "deleted":
                raise _not_found(404)
            return self._user_view(prop)

    def update_user_property(self, name: str, form: dict[str, str]) -> None:
        key = user_property_key(name)
        with self._lock:
            prop = self.user_props.get(key)
            if prop is None or prop["_state"] == "deleted":
                raise TaxonomyError(
                    409,
                    f"Attempted to operate on entity user_property, id "
                    f'"{key}", that does not exist.',
                )
            new_name = form.get("new_user_property_value", "").strip()
            if new_name and prop.get("_builtin"):
                raise TaxonomyError(
                    400, f'"{key}" is an Amplitude user property and cannot be renamed.'
                )
            new_key = user_property_key(new_name) if new_name else key
            if new_key != key and new_key in self.user_props:
                raise TaxonomyError(
                    409,
                    f'Attempted to rename user property "{key}" '
                    f'to "{new_key}", which already exists.',
                )
            _property_fields(form, prop)
            if new_key != key:
                prop["user_property"] = new_key
                self.user_props[new_key] = self.user_props.pop(key)

    def delete_user_property(self, name: str) -> None:
        key = user_property_key(name)
        with self._lock:
            prop = self.user_props.get(key)
            if prop is None:
                raise _not_found(404)
            if prop.get("_builtin"):
                raise TaxonomyError(
                    400, f'"{key}" is an Amplitude user property and cannot be deleted.'
                )
            if prop["_state"] == "deleted":
                raise TaxonomyError(409, f'User property "{key}" is already deleted.')
            if prop["_state"] == "planned":
                del self.user_props[key]
            else:
                prop["_state"] = "deleted"

    def restore_user_property(self, name: str) -> None:
        key = user_property_key(name)
        with self._lock:
            prop = self.user_props.get(key)
            if prop is None:
                raise _not_found(404)
            if prop["_state"] != "deleted":
                raise TaxonomyError(409, f'User property "{key}" is not deleted.')
            prop["_state"] = "live"

    # ----- group properties ---------------------------------------------------------------

    def _group_type(self, form: dict[str, str]) -> str:
        group_type = form.get("group_type", "").strip() or "account"
        if group_type not in self.group_types:
            raise _not_found(404)
        return group_type

    def create_group_property(self, form: dict[str, str]) -> None:
        key = group_property_key(_required(form, "group_property"))
        with self._lock:
            group_type = self._group_type(form)
            if (group_type, key) in self.group_props:
                raise TaxonomyError(
                    409, f'Attempted to add a group property, "{key}", that already exists.'
                )
            prop = {
                **_new_property(),
                "group_type": group_type,
                "group_property": key,
                "_state": "planned",
            }
            _property_fields(form, prop)
            self.group_props[(group_type, key)] = prop

    def list_group_properties(self, form: dict[str, str]) -> list[dict[str, Any]]:
        with self._lock:
            wanted = form.get("group_type", "").strip()
            return [
                self._user_view(p)
                for (gt, _), p in self.group_props.items()
                if (not wanted or gt == wanted) and p["_state"] != "deleted"
            ]

    def _group_prop(self, name: str, form: dict[str, str]) -> tuple[str, str]:
        key = (self._group_type(form), group_property_key(name))
        if key not in self.group_props:
            raise _not_found(404)
        return key

    def get_group_property(self, name: str, form: dict[str, str]) -> dict[str, Any]:
        with self._lock:
            prop = self.group_props[self._group_prop(name, form)]
            if prop["_state"] == "deleted":
                raise _not_found(404)
            return self._user_view(prop)

    def update_group_property(self, name: str, form: dict[str, str]) -> None:
        with self._lock:
            key = self._group_prop(name, form)
            prop = self.group_props[key]
            _property_fields(form, prop)
            new_name = form.get("new_group_property_value", "").strip()
            if new_name:
                new_key = (key[0], group_property_key(new_name))
                if new_key != key:
                    if new_key in self.group_props:
                        raise TaxonomyError(409, f'Group property "{new_key[1]}" already exists.')
                    prop["group_property"] = new_key[1]
                    self.group_props[new_key] = self.group_props.pop(key)

    def delete_group_property(self, name: str, form: dict[str, str]) -> None:
        with self._lock:
            key = self._group_prop(name, form)
            prop = self.group_props[key]
            if prop["_state"] == "deleted":
                raise TaxonomyError(409, f'Group property "{key[1]}" is already deleted.')
            if prop["_state"] == "planned":
                del self.group_props[key]
            else:
                prop["_state"] = "deleted"

    def restore_group_property(self, name: str, form: dict[str, str]) -> None:
        with self._lock:
            prop = self.group_props[self._group_prop(name, form)]
            if prop["_state"] != "deleted":
                raise TaxonomyError(
                    409, f'Group property "{prop["group_property"]}" is not deleted.'
                )
            prop["_state"] = "live"
