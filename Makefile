# linkage: two commands on a fresh machine (Python 3.11, Java 17, Maven):
#   make demo   the main job on the embedded store, on the bundled example
#   make test   the full test suite, with a real Neo4j server started and stopped around it
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test unit neo4j neo4j-stop bench bench-er bench-clusters bench-neo4j venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@rm -f $(VENV)/.installed-*; touch $@

demo: venv
	@rm -f out/demo.db out/demo.quarantine.csv
	$(VENV)/bin/linkage run examples/reports.csv examples/mentions.csv --store out/demo.db

# The full suite: unit tests, doctests, notebooks, and the Neo4j tests against a real server.
test: venv
	@bash scripts/neo4j.sh start
	@status=0; LINKAGE_NEO4J_REQUIRED=1 $(PY) -m pytest $(PYTEST_ARGS) || status=$$?; \
	  bash scripts/neo4j.sh stop; exit $$status

# The suite without the Neo4j server (Neo4j tests are then skipped with a reason).
unit: venv
	$(PY) -m pytest -m "not neo4j" $(PYTEST_ARGS)

neo4j: venv
	@bash scripts/neo4j.sh start

neo4j-stop:
	@bash scripts/neo4j.sh stop

bench-er: venv
	$(PY) -m bench.bench_er $(ARGS)

bench-clusters: venv
	$(PY) -m bench.bench_clusters $(ARGS)

bench: venv
	$(PY) -m bench.bench_run $(ARGS)

bench-neo4j: venv
	@bash scripts/neo4j.sh start
	$(PY) -m bench.bench_neo4j $(ARGS)

clean:
	rm -rf out .pytest_cache
