"""The meta reward model that filters GRM samples before voting (issue #3; not built yet).

Until it lands every parsed sample votes; the HTTP response reports ``votes`` separately from
``valid_samples`` so the switch to guided voting changes no field.
"""
