"""The GRM pipeline, pure apart from the engine it is handed: prompts, response orders, sampling plans,
parsing, the meta RM's selection and the vote. Nothing here knows HTTP, tenants or queues."""
