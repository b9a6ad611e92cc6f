"""An example kube-workflow step plugin (see ``file_step``)."""
