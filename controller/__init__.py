"""The ``workflow-controller`` process.

What belongs here: reading and validating configuration (the original's ConfigMap ``config.yaml``),
building the one shared API client, wiring informers, reconcilers and step plugins into a manager,
leader election on a ``coordination.k8s.io`` Lease, the health and metrics endpoints, structured
logging, signal handling and the command line. No workflow semantics live here: the controller
only assembles parts from :mod:`reconcilers`, :mod:`informers` and :mod:`stepkit`.

Modules (one concept each):

* :mod:`controller.config` — the frozen configuration objects; the ``config.yaml`` parser.
* :mod:`controller.client` — the one throttled ``ApiClient`` (``throttleQPS`` token bucket).
* :mod:`controller.leader` — Lease leader election (client-go semantics, no fencing).
* :mod:`controller.http`, :mod:`controller.health`, :mod:`controller.metrics` — the endpoint server,
  /healthz + /readyz named checks, Prometheus metrics with controller-runtime names.
* :mod:`controller.logs` — structlog JSON/console, contextvars-bound reconcile context.
* :mod:`controller.cli` — flags, ``--print-config``, exit codes, the signal ``Stopper``; it hands
  ``Settings`` to ``controller.manager.run(settings, stopper)``.

Layering: ``controller`` may import ``reconcilers`` and ``informers``; nothing imports ``controller``.
"""
