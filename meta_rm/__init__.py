"""The meta reward model that picks which GRM samples vote (guided voting, paper section 3.3).

Runtime (what the server loads; imports nothing from ``server``): :mod:`meta_rm.base` (the protocol and
its input), :mod:`meta_rm.selection` (top-k), :mod:`meta_rm.labels`, the backends (:mod:`meta_rm.linear`,
:mod:`meta_rm.hf`, :mod:`meta_rm.fake`) and :mod:`meta_rm.loading`. Training (``grm-meta-rm``) lives in
:mod:`meta_rm.training`, which sits above the scoring pipeline and drives it.
"""
