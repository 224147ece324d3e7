"""``@gated`` / ``@task.gated``: TaskFlow functions behind a gate."""
