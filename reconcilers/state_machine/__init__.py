"""The pure workflow state machine: ``decide(snapshot, now) -> Decision``.

No I/O, no clock reads, no threads, no logging (import-linter enforces it). Filled in by the
engine-core milestone; this package exists now so the layering contract has its subject.
"""
