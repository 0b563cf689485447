# Two entry points that work on a fresh machine (root, Debian, Python 3.10+):
#   make example   set up, then compile + verify + show the built-in example
#   make test      set up, then run the whole test suite (what CI runs)
#   make test-fast set up, then run the suite without the tests marked slow (a quick check while working)
PYTHON ?= python3

.PHONY: setup example test test-fast bench

setup:
	@command -v dot >/dev/null 2>&1 && command -v mpirun >/dev/null 2>&1 && command -v qemu-aarch64 >/dev/null 2>&1 && command -v aarch64-linux-gnu-g++ >/dev/null 2>&1 && command -v cmake >/dev/null 2>&1 && command -v g++ >/dev/null 2>&1 && command -v ip >/dev/null 2>&1 && command -v tc >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz openmpi-bin libopenmpi-dev g++ cmake g++-aarch64-linux-gnu qemu-user iproute2 >/dev/null; }
	$(PYTHON) -m pip install -q --root-user-action=ignore -e ".[test]" "mpi4py>=4"
	@$(PYTHON) -c "from mpi4py import MPI; v = MPI.Get_library_version(); assert 'Open MPI' in v, 'mpi4py is not using Open MPI: ' + v"
	$(PYTHON) -m edgec fetch-runtime aarch64 -q
	$(PYTHON) -m edgec fetch-runtime ulfm -q

example: setup
	$(PYTHON) examples/tiny_cnn.py
	cd examples && $(PYTHON) -m edgec compile tiny_cnn.onnx --plan tiny_cnn.edge -o out
	cd examples && $(PYTHON) -m edgec verify out
	cd examples && $(PYTHON) -m edgec verify out --mpi
	cd examples && $(PYTHON) -m edgec run out --frames 50
	cd examples && $(PYTHON) -m edgec show out --graph out.png

test: setup
	$(PYTHON) -m pytest -q

test-fast: setup
	$(PYTHON) -m pytest -q -m "not slow"

bench: setup
	@test -d /usr/share/datasets/fashion-mnist || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; }
	$(PYTHON) -m pip install -q --root-user-action=ignore -e ".[test,explore,bench]"
	$(PYTHON) benchmarks/run_all.py
