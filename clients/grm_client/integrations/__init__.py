"""Trainer integrations. Each module imports only its own framework's conventions, never the framework,
except :mod:`~grm_client.integrations.areal_workflow`, which AReaL imports in its own processes.

* :mod:`grm_client.integrations.trl`: ``reward_funcs`` entries for TRL's ``GRPOTrainer`` (sync and async);
* :mod:`grm_client.integrations.verl`: ``compute_score`` functions for verl's reward loop (sync, async, batch);
* :mod:`grm_client.integrations.areal`: AReaL's ``reward_fn``, and
  :mod:`grm_client.integrations.areal_workflow`: the RLVR workflow around it that AReaL's workers build;
* :mod:`grm_client.integrations.nemo_gym`: a NeMo Gym resources server's ``verify``.

OpenRLHF and slime need no client code: point OpenRLHF's ``--reward.remote_url`` at
``http://HOST:PORT/get_reward`` and slime's ``--rm-url`` at ``http://HOST:PORT/v1/reward`` (with
``--rm-type remote_rm --reward-key reward``). docs/trainers.md has each framework's lines.

Every adapter takes the address as ``base_url`` (default ``$GRM_URL``) and the API key of a grm-serve
started with ``GRM_API_KEYS`` as ``api_key`` (default ``$GRM_API_KEY``).
"""
