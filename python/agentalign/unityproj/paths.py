"""Where things live in the Unity project (paths relative to `unity_project/`).

The Unity side ships as one embedded UPM package; the island is its sample. `Samples~` is
ignored by the editor until the Package Manager imports the sample into `Assets/Samples/`, so
the sample exists once in the repository and its GUIDs are never seen twice.
"""

from __future__ import annotations

PACKAGE_NAME = "com.agentalign.personalities"
PACKAGE_DISPLAY_NAME = "agentalign Personalities"
PACKAGE_VERSION = "0.1.0"
PACKAGE = f"Packages/{PACKAGE_NAME}"
RUNTIME = f"{PACKAGE}/Runtime"
PACKAGE_EDITOR = f"{PACKAGE}/Editor"
SAMPLE_NAME = "Jumppad Island"
SAMPLE = f"{PACKAGE}/Samples~/JumppadIsland"
SAMPLE_SCRIPTS = f"{SAMPLE}/Scripts"
SAMPLE_PERSONALITIES = f"{SAMPLE}/Personalities"
# Where the Package Manager copies the sample in a project (Sample.importPath's convention:
# Assets/Samples/<package displayName>/<version>/<sample displayName>).
IMPORTED_SAMPLE = f"Assets/Samples/{PACKAGE_DISPLAY_NAME}/{PACKAGE_VERSION}/{SAMPLE_NAME}"
# The development project's own files: editor scripts (sample import, headless build, scene
# regeneration).
DEV = "Assets/AgentAlign"
DEV_EDITOR = f"{DEV}/Editor"
