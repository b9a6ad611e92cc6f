"""The step SDK: what a step author implements, and the built-in steps.

What belongs here: the ``Step`` protocol (``run``, ``rollback``, ``sync``), the frozen
``StepContext`` handed to each call, the step error tree (retryable / permanent / ignorable), the
entry-point registry (group ``stepkit.steps``), a test harness for plugin authors, and the built-in
step types.

This package is importable on its own: it imports nothing from ``controller``, ``reconcilers`` or
``informers``, so a plugin package depends on ``stepkit`` only.
"""
