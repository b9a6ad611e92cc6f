"""Property tests for the output merge rules the engine relies on."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from stepkit import ResourceStatus, derive_idempotency_key

text = st.text(max_size=8)
maybe = st.none() | text
resources = st.builds(
    ResourceStatus,
    status=maybe,
    id=maybe,
    name=maybe,
    address=maybe,
    attributes=st.dictionaries(text, text, max_size=4),
)


@given(resources, resources)
def test_applying_an_update_twice_changes_nothing_more(
    current: ResourceStatus, update: ResourceStatus
) -> None:
    once = current.updated_with(update)
    assert once.updated_with(update) == once


@given(resources, resources)
def test_set_fields_win_and_unset_fields_keep(current: ResourceStatus, update: ResourceStatus) -> None:
    merged = current.updated_with(update)
    for field in ("status", "id", "name", "address"):
        new = getattr(update, field)
        assert getattr(merged, field) == (getattr(current, field) if new is None else new)
    assert dict(merged.attributes) == {**current.attributes, **update.attributes}


@given(resources)
def test_status_json_round_trip(resource: ResourceStatus) -> None:
    assert ResourceStatus.from_dict(resource.to_dict()) == resource


@given(st.tuples(text, text), st.tuples(text, text))
def test_idempotency_keys_differ_when_inputs_differ(a: tuple[str, str], b: tuple[str, str]) -> None:
    if a != b:
        assert derive_idempotency_key(*a, "run") != derive_idempotency_key(*b, "run")
    else:
        assert derive_idempotency_key(*a, "run") == derive_idempotency_key(*b, "run")
