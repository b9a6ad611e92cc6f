"""The engine.

What belongs here: the pure workflow state machine (``reconcilers.state_machine*``: a snapshot and
``now`` in, a ``Decision`` out; no I/O, no clock, no logging, no threads) and the reconcilers that
carry decisions out against the API: the workflow reconciler, step execution through
:mod:`stepkit` plugins, queue admission (FIFO/FAIR), the callback outbox and Kubernetes Events.

Layering: ``reconcilers`` may import ``informers`` and ``stepkit``; it never imports ``controller``.
"""
