# The two commands a newcomer needs (see README.md). Everything else is in .ci/.
.PHONY: demo test bench quickstart lock

demo:  ## set everything up and run the main job: Airflow, Prefect and Dagster stop at gates on SQLite
	@.ci/bootstrap.sh
	@.venv/bin/python -m examples.main_job $(if $(AUTO_APPROVE),--auto-approve-as $(AUTO_APPROVE),)

test:  ## set everything up and run the whole test suite (needs the local PostgreSQL)
	@.ci/test.sh

bench:  ## run every benchmark and write docs/benchmarks.md, the plots and the README table
	@.ci/bootstrap.sh
	@.venv/bin/python -m bench

quickstart:  ## the CLI walk-through only: gates, refusals, quorum, the audit trail
	@.ci/bootstrap.sh
	@.venv/bin/python -m examples.quickstart

lock:  ## re-pin requirements/lock.txt from pyproject.toml (every extra, all platforms, Python 3.11)
	@.ci/lock.sh
