"""The Unity side's generated files: the island scene, its materials and textures, `.meta` files.

They are the package's sample (`paths`: where everything lives in `unity_project/`).

`generate(project)` writes them from the layout file (`agentalign unity-scene`); `check(project)`
says how the committed files differ from a fresh run. `unity_yaml` reads and writes Unity's YAML
dialect, `assets` the per-asset files (GUIDs, `.meta`, materials, PNG textures), `scene_parts` the
objects and components a scene is built from, `scene` the scene graph itself, `command` the
`agentalign unity-scene` command. See docs/unity_project.md.
"""

from agentalign.unityproj.scene import check, generate

__all__ = ["check", "generate"]
