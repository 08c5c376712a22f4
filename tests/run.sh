#!/usr/bin/env bash
# The one command that installs what the tests need and runs every check:
#
#     bash tests/run.sh [pytest arguments...]
#
# 1. apt-get installs docker.io, skopeo, containerd, podman, buildah, docker-registry,
#    systemd (systemd-analyze checks the unit file), chromium and chromium-driver (the
#    web interface's browser tests) and cargo (builds the benchmarks' load generator)
#    when missing;
# 2. pip installs regd in editable mode with its test extras;
# 3. runs ruff check, mypy and pytest (unit, app and e2e tests), every one of them even
#    when an earlier one fails, and prints a summary; exits non-zero if any failed.
#
# CI runs this through .ci/run with CI=true. There a missing tool is a failure, never a
# skip (tests/conftest.py fails any skipped test), and pytest collecting no tests
# (exit 5) fails like any other non-zero exit.
# Environment: PYTHON (default python3), REGD_TEST_TIMEOUT (pytest, seconds, default
# 1800), REGD_E2E_TARGET=distribution (run the e2e tests against CNCF distribution).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-python3}
APT_PACKAGES=(docker.io skopeo containerd podman buildah docker-registry systemd chromium chromium-driver)
# The benchmarks' load generator is Rust: Debian's cargo, unless a toolchain is on PATH.
command -v cargo >/dev/null || APT_PACKAGES+=(cargo)
TOOLS=(dockerd docker containerd ctr skopeo podman buildah docker-registry systemd-analyze chromium chromedriver cargo)
LINT_PATHS=(regd tests benchmarks)

SUMMARY=()
FAILED=0

say() { printf '\n==> %s\n' "$*"; }
# Any CI convention (CI=true, CI=1...), as tests/prerequisites.py reads it.
in_ci() { case "${CI:-}" in ""|0|false|FALSE|False|no|off) return 1 ;; *) return 0 ;; esac; }

# Missing prerequisites: fatal under CI; elsewhere a warning (the tests that need them skip).
missing() {
  if in_ci; then
    printf 'error: %s (CI=true: missing prerequisites are failures)\n' "$*" >&2
    exit 1
  fi
  printf 'warning: %s; tests that need it will be skipped\n' "$*" >&2
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

install_packages() {
  if ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
    missing "no apt-get/dpkg-query to install ${APT_PACKAGES[*]}"
    return 0
  fi
  local package absent=()
  for package in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
      absent+=("$package")
    fi
  done
  if [ ${#absent[@]} -eq 0 ]; then
    say "apt: ${APT_PACKAGES[*]} already installed"
    return 0
  fi
  say "apt: installing ${absent[*]}"
  if ! { as_root apt-get update -q &&
         as_root env DEBIAN_FRONTEND=noninteractive \
           apt-get install -y -q --no-install-recommends "${absent[@]}"; }; then
    missing "apt-get could not install ${absent[*]}"
  fi
}

check_tools() {
  local tool absent=()
  for tool in "${TOOLS[@]}"; do
    command -v "$tool" >/dev/null || absent+=("$tool")
  done
  if [ ${#absent[@]} -gt 0 ]; then
    missing "not found on PATH: ${absent[*]}"
  fi
}

# step NAME COMMAND...: run one check, record how it went, carry on either way.
step() {
  local name=$1 started=$SECONDS status=0 outcome
  shift
  say "$name: $*"
  "$@" || status=$?
  case $status in
    0) outcome="ok" ;;
    5) outcome="FAILED (pytest collected no tests)" ;;
    124) outcome="FAILED (timed out)" ;;
    *) outcome="FAILED (exit $status)" ;;
  esac
  [ "$status" -eq 0 ] || FAILED=1
  SUMMARY+=("$(printf '%-8s %-40s %5ss' "$name" "$outcome" $((SECONDS - started)))")
}

install_packages
check_tools

say "pip: installing regd with its test extras"
"$PYTHON" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -e '.[test]'

lint_paths=()
for path in "${LINT_PATHS[@]}"; do
  [ -e "$path" ] && lint_paths+=("$path")
done

step ruff "$PYTHON" -m ruff check "${lint_paths[@]}"
step mypy "$PYTHON" -m mypy
# --foreground: pytest alone gets the SIGTERM and tears its daemons down (see conftest).
step pytest timeout --foreground --kill-after=60 "${REGD_TEST_TIMEOUT:-1800}" \
  "$PYTHON" -m pytest -q -rfEs "$@"

say "summary"
printf '  %s\n' "${SUMMARY[@]}"
if [ "$FAILED" -ne 0 ]; then
  printf '\nFAILED\n'
  exit 1
fi
printf '\nall checks passed\n'
