#!/usr/bin/env bash
# Installs the Debian libraries MuJoCo's offscreen rendering needs (Mesa EGL, OSMesa fallback),
# only when one is missing. Needs root (or sudo); otherwise it says what to install.
set -euo pipefail
pkgs=(libegl1 libegl-mesa0 libgl1-mesa-dri libosmesa6)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "warning: cannot install ${missing[*]} (no apt-get); MuJoCo rendering may not work" >&2
  exit 0
fi
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "installing system libraries for MuJoCo rendering: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
