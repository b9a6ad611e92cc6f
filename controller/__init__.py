"""The ``workflow-controller`` process.

What belongs here: reading and validating configuration (the original's ConfigMap ``config.yaml``),
building the one shared API client, wiring informers, reconcilers and step plugins into a manager,
leader election on a ``coordination.k8s.io`` Lease, the health and metrics endpoints, structured
logging, signal handling and the command line. No workflow semantics live here: the controller
only assembles parts from :mod:`reconcilers`, :mod:`informers` and :mod:`stepkit`.

Layering: ``controller`` may import ``reconcilers`` and ``informers``; nothing imports ``controller``.
"""
