#!/usr/bin/env bash
# Builds a `docker save`-format archive of a busybox image from the host's
# static busybox (Debian: busybox-static), for machines without a registry:
#
#   scripts/busybox-image.sh busybox.tar
#   kubernate image import busybox.tar
#
# The image is busybox:latest: /bin/busybox with a link per applet, a
# minimal /etc/passwd and /etc/group (root, nobody), /tmp, and Cmd ["sh"].
set -euo pipefail
out="${1:?usage: $0 OUT.tar}"
busybox="${BUSYBOX:-$(command -v busybox || true)}"
[[ -x "$busybox" ]] || { echo "no busybox found (apt-get install busybox-static)" >&2; exit 1; }
if ldd "$busybox" >/dev/null 2>&1; then
  echo "$busybox is dynamically linked; a static one is needed (busybox-static)" >&2
  exit 1
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
root="$work/layer"
mkdir -p "$root/bin" "$root/etc" "$root/root" "$root/home" "$root/tmp" "$root/var" "$root/usr/bin"
chmod 1777 "$root/tmp"
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
  [[ "$applet" == busybox ]] || ln -sf busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
tar -cf "$work/layer.tar" -C "$root" .
cat > "$work/config.json" <<'JSON'
{"architecture": "amd64", "os": "linux",
 "config": {"Cmd": ["sh"], "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
 "rootfs": {"type": "layers", "diff_ids": []}}
JSON
echo '[{"Config": "config.json", "RepoTags": ["busybox:latest"], "Layers": ["layer.tar"]}]' > "$work/manifest.json"
tar -cf "$out" -C "$work" manifest.json config.json layer.tar
echo "wrote $out (busybox:latest)"
