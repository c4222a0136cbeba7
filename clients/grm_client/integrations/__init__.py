"""Trainer integrations. Each module imports only its own framework's conventions, never the framework.

* :mod:`grm_client.integrations.trl`: a ``reward_funcs`` entry for TRL's ``GRPOTrainer``;
* :mod:`grm_client.integrations.verl`: ``compute_score`` functions for verl's custom reward hook;
* OpenRLHF needs no client code: point ``--remote_rm_url`` at ``http://HOST:PORT/get_reward``.
"""
