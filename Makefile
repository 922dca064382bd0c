# Development and CI entry points. Each target creates/reuses .venv by itself.
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.odkd-installed
# Pinned for development/CI only (they lie on this machine's disk); pyproject keeps ranges.
TORCH_PIN := torch==2.14.1 torchvision==0.29.1

# Real teachers (odkd teachers fetch): downloaded once into the cache, reused by every clone.
ODKD_CACHE ?= $(HOME)/.cache/odkd
export ODKD_CACHE
TEACHERS_STAMP := $(ODKD_CACHE)/teachers/.fetched

.PHONY: venv demo demo-real test test-fast teachers clean

$(STAMP): pyproject.toml
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q $(TORCH_PIN)
	$(VPY) -m pip install -q -e '.[dev]' $(TORCH_PIN)
	touch $(STAMP)

venv: $(STAMP)

# store.py holds the pinned versions and hashes: a change there fetches again
$(TEACHERS_STAMP): $(STAMP) src/odkd/teachers/store.py
	$(VENV)/bin/odkd teachers fetch
	touch $@

teachers: $(TEACHERS_STAMP)

demo: $(STAMP)
	$(VENV)/bin/odkd demo --out demo_out

# label-free distillation from the real teachers on ../shared/data/real (minutes on a CPU)
demo-real: $(STAMP) $(TEACHERS_STAMP)
	$(VENV)/bin/odkd demo real --out real_out

# A failed set-up (no registry reachable) must not hide the rest of the suite: the teachers'
# tests then skip, each saying which command sets them up.
test: $(STAMP)
	$(MAKE) teachers || echo "[make] the real teachers are not set up; their tests skip (run 'make teachers')"
	OMP_NUM_THREADS=2 $(VPY) -m pytest -q tests

test-fast: $(STAMP)
	OMP_NUM_THREADS=2 $(VPY) -m pytest -q -m "not slow" tests

clean:
	rm -rf $(VENV) demo_out real_out
