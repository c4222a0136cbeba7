"""Training the meta RM (``grm-meta-rm``): preference data, sampling through the GRM pipeline, fitting.

This part sits above the scoring pipeline: it drives ``server.pipeline.scoring`` in-process to sample
trajectories. The meta RM's runtime (the rest of :mod:`meta_rm`) never imports it.
"""
