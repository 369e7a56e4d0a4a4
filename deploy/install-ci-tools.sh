#!/usr/bin/env bash
# Installs the command-line tools the tests shell out to, when they are missing:
#   promtool      (Debian package prometheus)              promtool check/test rules, check metrics
#   amtool        (Debian package prometheus-alertmanager) amtool check-config
#   kcat                                                   reading topics in tests and runbooks
#   chromium      (Debian package chromium)                the console's browser tests (Playwright)
# Debian/Ubuntu only; run as root (CI images) or with sudo available. Idempotent.
set -euo pipefail

declare -A package_of=(
    [promtool]=prometheus
    [amtool]=prometheus-alertmanager
    [kcat]=kcat
    [chromium]=chromium
)

missing=()
for tool in promtool amtool kcat chromium; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("${package_of[$tool]}")
done

if ((${#missing[@]} == 0)); then
    echo "install-ci-tools: promtool, amtool, kcat and chromium already present"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-ci-tools: apt-get not found; install ${missing[*]} by hand" >&2
    exit 1
fi

as_root=()
if ((EUID != 0)); then
    command -v sudo >/dev/null 2>&1 || { echo "install-ci-tools: need root or sudo" >&2; exit 1; }
    as_root=(sudo)
fi

echo "install-ci-tools: installing ${missing[*]}"
# Wait for a concurrent apt/dpkg (another CI step, unattended-upgrades) instead of failing.
apt_options=(-o DPkg::Lock::Timeout=600)
"${as_root[@]}" apt-get "${apt_options[@]}" update -qq
# --no-install-recommends keeps the server daemons' extras out; the packages' services are not
# started in containers without an init system, and CI only needs the command-line tools.
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get "${apt_options[@]}" install -y -qq --no-install-recommends "${missing[@]}"

for tool in promtool amtool kcat chromium; do
    command -v "$tool" >/dev/null 2>&1 || { echo "install-ci-tools: $tool still missing" >&2; exit 1; }
done
echo "install-ci-tools: done"
