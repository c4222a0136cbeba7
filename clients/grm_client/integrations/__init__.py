"""Trainer integrations. Each module imports only its own framework's conventions, never the framework.

* :mod:`grm_client.integrations.trl`: ``reward_funcs`` entries for TRL's ``GRPOTrainer`` (sync and async);
* :mod:`grm_client.integrations.verl`: ``compute_score`` functions for verl's reward loop (sync, async, batch);
* :mod:`grm_client.integrations.areal`: AReaL's ``reward_fn``;
* :mod:`grm_client.integrations.nemo_gym`: a NeMo Gym resources server's ``verify``.

OpenRLHF and slime need no client code: point OpenRLHF's ``--reward.remote_url`` at
``http://HOST:PORT/get_reward`` and slime's ``--rm-url`` at ``http://HOST:PORT/v1/reward`` (with
``--rm-type remote_rm --reward-key reward``). docs/trainers.md has each framework's lines.
"""
