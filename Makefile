# Two commands for users: `make demo` (the main job) and `make test` (the whole suite).
# The first call creates .venv from requirements.txt; later calls reuse it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Loopback only, whatever the caller's shell says (tests pick their own ROS_DOMAIN_ID).
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export ROS_LOCALHOST_ONLY := 1

.PHONY: demo test venv bench bench-readme clean system-deps

# Debian's libusb-1.0-0 (pyrealsense2 needs libusb-1.0.so.0). Installed when missing and we are
# root with apt (CI, containers); otherwise a note: a non-root user runs the printed command.
system-deps:
	@if ! { ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null; } | grep -q 'libusb-1\.0\.so\.0'; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing libusb-1.0-0 (apt) for pyrealsense2"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libusb-1.0-0; \
	  else \
	    echo "NOTE: libusb-1.0-0 is missing (pyrealsense2 needs it): sudo apt-get install -y libusb-1.0-0"; \
	  fi; \
	fi

# unitree-sdk2 goes in with --no-deps (its cyclonedds pin has no cp311 wheel, its opencv-python
# would clash with opencv-python-headless); requirements.txt pins the cyclonedds that works.
# Why and the import workaround: sparsevideonav_ros/robot/unitree_sdk.py.
# depth-anything-3 goes in with --no-deps too: it declares numpy<2 (torch and the stack use numpy 2),
# xformers, open3d, moviepy==1.0.3 and pre-commit for parts the pose head never imports; its network
# needs only einops, addict and omegaconf (requirements.txt). Why: policies/pose_estimators/da3_estimator.py.
$(STAMP): requirements.txt | system-deps
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps unitree-sdk2==1.0.1
	$(PY) -m pip install --quiet --no-deps depth-anything-3==0.1.1
	touch $(STAMP)

venv: $(STAMP)

demo: system-deps $(STAMP)
	$(PY) -m sparsevideonav_ros.tools.demo $(ARGS)

test: system-deps $(STAMP)
	$(PY) -m pytest -q test $(ARGS)

bench: $(STAMP)
	$(PY) bench/bench_jpeg.py
	$(PY) bench/bench_latency.py

# Rerun every bench with its defaults (about 10 minutes on 2 cores), keep what each printed in
# docs/bench/, and paste the excerpts into README.md's performance section (tools/docs.py).
bench-readme: $(STAMP)
	$(PY) bench/bench_jpeg.py > docs/bench/bench_jpeg.txt
	$(PY) bench/bench_latency.py > docs/bench/bench_latency.txt
	$(PY) bench/bench_sparsevideonav.py > docs/bench/bench_sparsevideonav.txt
	$(PY) bench/bench_janusvln.py --threads 1 > docs/bench/bench_janusvln.txt
	$(PY) bench/bench_pose_head.py --repeats 5 --flops > docs/bench/bench_pose_head.txt
	$(PY) -m sparsevideonav_ros.tools.docs --write README.md

clean:
	rm -rf $(VENV) runs build install log
