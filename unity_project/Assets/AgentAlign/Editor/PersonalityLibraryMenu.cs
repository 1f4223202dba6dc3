// AgentAlign > Fill Personality Library From Models Folder: every ONNX model in
// Assets/AgentAlign/Models becomes a personality, with the card of the same name beside it
// (<name>.onnx + <name>.json, as `agentalign export` writes them).

using System.IO;
using Unity.InferenceEngine;
using UnityEditor;
using UnityEngine;

namespace AgentAlign.Editor
{
    public static class PersonalityLibraryMenu
    {
        public const string ModelsFolder = "Assets/AgentAlign/Models";
        public const string LibraryPath = ModelsFolder + "/Personalities.asset";

        [MenuItem("AgentAlign/Fill Personality Library From Models Folder")]
        public static void Fill()
        {
            var library = AssetDatabase.LoadAssetAtPath<PersonalityLibrary>(LibraryPath);
            if (library == null)
            {
                library = ScriptableObject.CreateInstance<PersonalityLibrary>();
                AssetDatabase.CreateAsset(library, LibraryPath);
            }
            library.personalities.Clear();
            foreach (string guid in AssetDatabase.FindAssets("t:ModelAsset", new[] { ModelsFolder }))
            {
                string path = AssetDatabase.GUIDToAssetPath(guid);
                var personality = new Personality();
                personality.name = Path.GetFileNameWithoutExtension(path);
                personality.model = AssetDatabase.LoadAssetAtPath<ModelAsset>(path);
                personality.card = AssetDatabase.LoadAssetAtPath<TextAsset>(Path.ChangeExtension(path, ".json"));
                library.personalities.Add(personality);
            }
            EditorUtility.SetDirty(library);
            AssetDatabase.SaveAssets();
            Debug.Log("AgentAlign: " + library.personalities.Count + " personalities in " + LibraryPath);
        }
    }
}
