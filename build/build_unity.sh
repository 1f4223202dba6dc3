#!/usr/bin/env bash
# Build the jumppad island's Linux player headless, from the Unity project in unity_project/.
#
#   build/build_unity.sh [more Unity arguments, e.g. -buildOutput /abs/path/Island.x86_64]
#
# It runs Unity's documented command line for a scripted build:
#   "$UNITY" -batchmode -quit -projectPath unity_project \
#            -executeMethod AgentAlign.Editor.Build.Linux -logFile -
# (Assets/AgentAlign/Editor/Build.cs), after a first run that imports the package's island
# sample (DevProject.ImportSample). The build writes build/out/linux/JumppadIsland.x86_64 and
# its data folder; build/out/ is git-ignored. Needs a Unity 6000.0 editor with Linux Build
# Support (Mono) and an activated licence. UNITY: the editor's executable; by default the first
# of unity-editor or Unity on PATH, or the Unity Hub's folder for the version in
# unity_project/ProjectSettings/ProjectVersion.txt. Exit status: Unity's (non-zero on failure).
set -euo pipefail
cd "$(dirname "$0")/.."

project="unity_project"
version="$(sed -n 's/^m_EditorVersion: *//p' "$project/ProjectSettings/ProjectVersion.txt")"
if [ -z "${UNITY:-}" ]; then
  for candidate in unity-editor Unity "$HOME/Unity/Hub/Editor/$version/Editor/Unity" \
      "/Applications/Unity/Hub/Editor/$version/Unity.app/Contents/MacOS/Unity"; do
    if command -v "$candidate" >/dev/null 2>&1; then
      UNITY="$(command -v "$candidate")"
      break
    fi
  done
fi
if [ -z "${UNITY:-}" ]; then
  echo "build_unity.sh: no Unity editor found; install Unity $version with Linux Build Support" \
       "and set UNITY=/path/to/Unity" >&2
  exit 2
fi

echo "build_unity.sh: $UNITY ($project, Unity $version expected)" >&2
# The island is the embedded package's sample: one run imports it (and compiles its scripts),
# the next builds it.
"$UNITY" -batchmode -quit -projectPath "$project" \
  -executeMethod AgentAlign.Editor.DevProject.ImportSample -logFile -
"$UNITY" -batchmode -quit -projectPath "$project" \
  -executeMethod AgentAlign.Editor.Build.Linux -logFile - "$@"
echo "build_unity.sh: done; default player: build/out/linux/JumppadIsland.x86_64" >&2
