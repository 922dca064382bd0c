# Sourced by tools/gpu_table.sh and tools/gpu_check.sh (not run on its own): what both
# prepared GPU calls need before their first odkd command. The device machine has its own
# torch and no pycocotools, and nothing may be pip-installed over that torch, so the carried
# cp312 pycocotools wheel (.whl/, see docs/development.md "GPU checks") goes into /tmp/site, which is
# appended to PYTHONPATH; an `odkd` executable runs this checkout's src/ with the machine's
# python3 (`timeout` cannot run a shell function); then one block records the environment.
#
#   gpu_env_setup LOG     # LOG: the caller's log file (appended to, and echoed)

gpu_env_setup() {
  local log=$1
  export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
  if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl >>"$log" 2>&1 && export PYTHONPATH=$PYTHONPATH:/tmp/site
  fi
  mkdir -p /tmp/odkd-bin
  printf '#!/bin/sh\nexec python3 -c "import sys; from odkd.cli import main; sys.exit(main(sys.argv[1:]))" "$@"\n' \
    >/tmp/odkd-bin/odkd
  chmod +x /tmp/odkd-bin/odkd
  export PATH=/tmp/odkd-bin:$PATH
  {
    date -u; nvidia-smi -L 2>/dev/null; nproc
    python3 -c 'import sys, torch, cv2, numpy; print("python", sys.version.split()[0], "torch",
torch.__version__, "cuda", torch.version.cuda, "gpu", torch.cuda.is_available() and
torch.cuda.get_device_name(0), "cv2", cv2.__version__, "numpy", numpy.__version__)'
    python3 -c 'import pycocotools, odkd; print("pycocotools ok; odkd", odkd.__file__)'
  } 2>&1 | tee -a "$log"
}
