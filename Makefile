# The two commands a newcomer needs (see README.md). Everything else is in .ci/.
.PHONY: demo test bench

demo:  ## set everything up and run the main job on the embedded default (SQLite)
	@.ci/bootstrap.sh
	@.venv/bin/python -m examples.quickstart

test:  ## set everything up and run the whole test suite (needs the local PostgreSQL)
	@.ci/test.sh

bench:  ## run the benchmarks and print their figures
	@.ci/bootstrap.sh
	@.venv/bin/python -m bench.audit_verify
	@.venv/bin/python -m bench.gate_throughput
