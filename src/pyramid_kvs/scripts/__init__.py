"""Console scripts: ``pkvs``, the stores of an application from the shell."""
