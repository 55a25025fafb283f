# Two commands for users: `make demo` (the main job) and `make test` (the whole suite).
# The first call creates .venv from requirements.txt; later calls reuse it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Loopback only, whatever the caller's shell says (tests pick their own ROS_DOMAIN_ID).
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export ROS_LOCALHOST_ONLY := 1

.PHONY: demo test venv bench clean

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m sparsevideonav_ros.tools.demo $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q test $(ARGS)

bench: $(STAMP)
	$(PY) bench/bench_jpeg.py
	$(PY) bench/bench_latency.py

clean:
	rm -rf $(VENV) runs build install log
