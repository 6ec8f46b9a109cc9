#!/usr/bin/env bash
# Desktop check: a real QGIS desktop under Xvfb, a fresh profile, no torch importable, the plugin
# installed from the built zip; scripts/desktop_check/drive.py installs the packages from the
# dock, segments the bundled sample, fine-tunes, runs the Toolbox and unloads the plugin, and
# takes screenshots. Outside `make test` (it installs torch: a few minutes).
#
# Usage: scripts/desktop_check.sh [--update-docs]
#   Output: build/desktop_check/{screens/*.png,result.json,diagnostics.txt,qgis.log}
#   --update-docs copies the screenshots used by docs/gui.md and docs/install.md to docs/img/.
# Environment:
#   SGCAD_TORCH_INDEX_URL  where pip gets torch (default here: empty = pip's own configuration,
#                          e.g. a wheel folder; unset it to use PyTorch's index as users do)
#   SGCAD_CHECK_EPOCHS     fine-tune epochs (default 2)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
OUT="${SGCAD_CHECK_OUT:-$ROOT/build/desktop_check}"
UPDATE_DOCS=0
[ "${1:-}" = "--update-docs" ] && UPDATE_DOCS=1

need=""
for tool in Xvfb qgis unzip; do command -v "$tool" >/dev/null || need="$need $tool"; done
if [ -n "$need" ]; then
  echo "desktop-check: installing xvfb/unzip (missing:$need)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends xvfb unzip qgis python3-qgis >/dev/null
fi

rm -rf "$OUT"
mkdir -p "$OUT/screens"
BUILD="$(.venv/bin/python scripts/build_plugin.py zip)"
echo "$BUILD"
ZIP="$(echo "$BUILD" | head -1 | cut -d' ' -f1)"
PROFILES="$OUT/profiles"
PLUGINS="$PROFILES/profiles/default/python/plugins"
mkdir -p "$PLUGINS" "$PROFILES/profiles/default/QGIS"
unzip -q "$ZIP" -d "$PLUGINS"
# a user who ticked the plugin in the Plugin Manager; no first-run dialogs
cat > "$PROFILES/profiles/default/QGIS/QGIS3.ini" <<INI
[PythonPlugins]
sgcad_qgis=true
[qgis]
checkVersion=false
askToSaveMemoryLayers=false
showTips322=false
[UI]
hidePanelsTip=true
INI

DISPLAY_NUM=":$(( 90 + RANDOM % 9 ))"
Xvfb "$DISPLAY_NUM" -screen 0 1600x1000x24 -nolisten tcp >"$OUT/xvfb.log" 2>&1 &
XVFB=$!
trap 'kill $XVFB 2>/dev/null || true' EXIT
sleep 2

# A new user's environment: no PYTHONPATH (so no .venv and no torch), QGIS's system Python.
# pip's own settings (PIP_* variables: wheel folders, certificates, timeouts) are kept, as a
# user's pip.conf would be: on the project's machines they point pip at the local torch wheel.
RUNTIME="$OUT/runtime"; mkdir -p "$RUNTIME"; chmod 700 "$RUNTIME"
PIP_VARS=()
while IFS='=' read -r name value; do
  case "$name" in PIP_*) PIP_VARS+=("$name=$value") ;; esac
done < <(env)
set +e
env -i "${PIP_VARS[@]}" HOME="$OUT/home" DISPLAY="$DISPLAY_NUM" PATH=/usr/bin:/bin LANG=C.UTF-8 XDG_RUNTIME_DIR="$RUNTIME" \
  SGCAD_CHECK_OUT="$OUT" SGCAD_CHECK_EPOCHS="${SGCAD_CHECK_EPOCHS:-2}" \
  SGCAD_TORCH_INDEX_URL="${SGCAD_TORCH_INDEX_URL-}" \
  timeout 2400 qgis --profiles-path "$PROFILES" --nologo --noversioncheck --code "$ROOT/scripts/desktop_check/drive.py" \
  >"$OUT/qgis.log" 2>&1
RC=$?
set -e
echo "desktop-check: QGIS exited with $RC (134 = abort, 139 = segfault)"
echo "$RC" > "$OUT/qgis_exit_code"
if [ ! -f "$OUT/result.json" ]; then
  echo "desktop-check: no result.json; see $OUT/qgis.log"; tail -30 "$OUT/qgis.log"; exit 1
fi
STATUS=0
.venv/bin/python - "$OUT" "$RC" <<'PY' || STATUS=$?
import json, sys
out, rc = sys.argv[1], int(sys.argv[2])
r = json.load(open(f"{out}/result.json"))
c = r["checks"]
tree = c.get("tree_after_toolbox", [])
dock_group = (c.get("tree_after_segment") or [["", None, None]])[0]
ok = {
    "torch missing at start": c.get("torch_importable_at_start") is False,
    "dock opened and listed torch": "torch" in c.get("missing_listed", ""),
    "install worked without restart": c.get("torch_importable_after_install") is True and c.get("dock_enabled_after_install"),
    "segmentation ran": bool(c.get("segment_run") and c["segment_run"][1]),
    "fine-tune + re-segment ran": len(c.get("finetune_runs", [])) == 2 and all(x[1] for x in c["finetune_runs"]),
    "progress never backwards": c.get("progress_never_backwards") is True,
    "one SGCAD message in the bar": c.get("message_bar_items", 9) <= 1,
    "Toolbox run: same group as the dock, under the labels": len(tree) > 1 and tree[0][0] == "SGCAD labels"
        and tree[1][0].startswith("SGCAD Segmentation") and tree[1][2] == dock_group[2],
    "plugin unloaded with the drawing tool active, no error": c.get("tool_active_before_unload") is True
                                                              and c.get("errors_from_unload") == [],
    "no OGR 'Cannot open' lines": c.get("ogr_cannot_open_lines", 1) == 0,
    "no ONNX failure lines": c.get("onnx_failure_lines", 1) == 0,
    "no Python errors": c.get("python_errors", 1) == 0,
    "QGIS exited cleanly": rc == 0,
}
for name, good in ok.items():
    print(f"  {'ok  ' if good else 'FAIL'} {name}")
print(f"screenshots: {out}/screens; details: {out}/result.json")
sys.exit(0 if all(ok.values()) else 1)
PY
if [ "$UPDATE_DOCS" = 1 ]; then
  mkdir -p docs/img
  for name in 02_dock_missing_packages 03_installing 04_installed_no_restart 05_segmented 06_labels_on_top \
      07_finetuned_gates_tab 08_check_environment 09_toolbox_dialog 10_toolbox_results; do
    [ -f "$OUT/screens/$name.png" ] && cp "$OUT/screens/$name.png" "docs/img/desktop_$name.png"
  done
  echo "desktop-check: screenshots copied to docs/img/desktop_*.png"
fi
exit $STATUS
