// Reference declarations: the UnityEngine API that the Unity side (the package, its sample and the
// development project's editor scripts) uses, from the
// Unity 6 (6000.0) Scripting Reference. Signatures only; bodies are stubs. Not Unity's code.
// Compiled into UnityEngine.dll by tests/unity_csharp.py.

using System;

namespace UnityEngine
{
    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Object.html
    public class Object
    {
        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Object-name.html
        public string name { get { throw null; } set { } }

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Object.GetInstanceID.html
        public int GetInstanceID() { throw null; }
    }

    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Component.html
    public class Component : Object
    {
        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Component-transform.html
        public Transform transform { get { throw null; } }

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Component-gameObject.html
        public GameObject gameObject { get { throw null; } }

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Component.GetComponent.html
        public T GetComponent<T>() { throw null; }

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Component.GetComponentInChildren.html
        public T GetComponentInChildren<T>() { throw null; }

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Component.SendMessageUpwards.html
        public void SendMessageUpwards(string methodName, object value, SendMessageOptions options) { }
    }

    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/GameObject.html
    public sealed class GameObject : Object
    {
        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/GameObject.AddComponent.html
        public T AddComponent<T>() where T : Component { throw null; }
    }

    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Behaviour.html
    public class Behaviour : Component
    {
    }

    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/MonoBehaviour.html
    public class MonoBehaviour : Behaviour
    {
    }

    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/ScriptableObject.html
    public class ScriptableObject : Object
    {
    }

    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Transform.html
    public class Transform : Component
    {
        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Transform-position.html
        public Vector3 position { get { throw null; } set { } }

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Transform-rotation.html
        public Quaternion rotation { get { throw null; } set { } }

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Transform-eulerAngles.html
        public Vector3 eulerAngles { get { throw null; } set { } }
    }

    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Collider.html
    public class Collider : Component
    {
    }

    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/TextAsset.html
    public class TextAsset : Object
    {
        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/TextAsset-text.html
        public string text { get { throw null; } }
    }

    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/SendMessageOptions.html
    // (enums list only the members the scripts use, with Unity's values)
    public enum SendMessageOptions
    {
        DontRequireReceiver = 1,
    }

    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Vector2.html
    public struct Vector2
    {
        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Vector2-x.html
        public float x;

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Vector2-y.html
        public float y;
    }

    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Vector3.html
    public struct Vector3
    {
        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Vector3-x.html
        public float x;

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Vector3-y.html
        public float y;

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Vector3-z.html
        public float z;

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Vector3-ctor.html
        public Vector3(float x, float y, float z) { this.x = x; this.y = y; this.z = z; }
    }

    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Quaternion.html
    public struct Quaternion
    {
        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Quaternion.Euler.html
        public static Quaternion Euler(float x, float y, float z) { throw null; }
    }

    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Rect.html
    public struct Rect
    {
        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Rect-ctor.html
        public Rect(float x, float y, float width, float height) { throw null; }

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Rect-xMin.html
        public float xMin { get { throw null; } set { } }

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Rect-yMin.html
        public float yMin { get { throw null; } set { } }

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Rect-xMax.html
        public float xMax { get { throw null; } set { } }

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Rect-yMax.html
        public float yMax { get { throw null; } set { } }

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Rect-center.html
        public Vector2 center { get { throw null; } set { } }

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Rect-width.html
        public float width { get { throw null; } set { } }

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Rect-height.html
        public float height { get { throw null; } set { } }
    }

    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Color.html
    public struct Color
    {
        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Color-yellow.html
        public static Color yellow { get { throw null; } }

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Color-red.html
        public static Color red { get { throw null; } }
    }

    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Gizmos.html
    public sealed class Gizmos
    {
        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Gizmos-color.html
        public static Color color { get { throw null; } set { } }

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Gizmos.DrawLine.html
        public static void DrawLine(Vector3 from, Vector3 to) { }

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Gizmos.DrawWireCube.html
        public static void DrawWireCube(Vector3 center, Vector3 size) { }
    }

    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Time.html
    public class Time
    {
        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Time-fixedDeltaTime.html
        public static float fixedDeltaTime { get { throw null; } set { } }
    }

    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Debug.html
    public class Debug
    {
        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Debug.Log.html
        public static void Log(object message) { }

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Debug.LogWarning.html
        public static void LogWarning(object message) { }

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Debug.LogError.html
        public static void LogError(object message) { }
    }

    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Input.html
    public class Input
    {
        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Input.GetAxisRaw.html
        public static float GetAxisRaw(string axisName) { throw null; }

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Input.GetKey.html
        public static bool GetKey(KeyCode key) { throw null; }

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Input.GetKeyDown.html
        public static bool GetKeyDown(KeyCode key) { throw null; }
    }

    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/KeyCode.html
    // (Unity's values for the members used; Alpha1-9 and Keypad1-9 follow Alpha0 and Keypad0.)
    public enum KeyCode
    {
        Tab = 9,
        Alpha0 = 48,
        B = 98,
        E = 101,
        N = 110,
        Q = 113,
        Keypad0 = 256,
        JoystickButton4 = 334,
        JoystickButton5 = 335,
    }

    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/JsonUtility.html
    public static class JsonUtility
    {
        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/JsonUtility.FromJson.html
        public static T FromJson<T>(string json) { throw null; }
    }

    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/GUI.html
    public class GUI
    {
        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/GUI.Box.html
        public static void Box(Rect position, string text) { }

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/GUI.Label.html
        public static void Label(Rect position, string text) { }
    }

    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Screen.html
    public sealed class Screen
    {
        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Screen-height.html
        public static int height { get { throw null; } }
    }

    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/GUILayoutOption.html
    public sealed class GUILayoutOption
    {
    }

    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/GUILayout.html
    public class GUILayout
    {
        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/GUILayout.BeginArea.html
        public static void BeginArea(Rect screenRect) { }

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/GUILayout.EndArea.html
        public static void EndArea() { }

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/GUILayout.Button.html
        public static bool Button(string text, params GUILayoutOption[] options) { throw null; }

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/GUILayout.Label.html
        public static void Label(string text, params GUILayoutOption[] options) { }
    }

    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Application.html
    public class Application
    {
        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Application-dataPath.html
        public static string dataPath { get { throw null; } }

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/Application-isBatchMode.html
        public static bool isBatchMode { get { throw null; } }
    }

    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/FullScreenMode.html
    public enum FullScreenMode
    {
        Windowed = 3,
    }

    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/ColorSpace.html
    public enum ColorSpace
    {
        Gamma = 0,
    }

    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/PropertyAttribute.html
    public abstract class PropertyAttribute : Attribute
    {
    }

    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/TooltipAttribute.html
    [AttributeUsage(AttributeTargets.Field)]
    public class TooltipAttribute : PropertyAttribute
    {
        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/TooltipAttribute-ctor.html
        public TooltipAttribute(string tooltip) { }
    }

    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/HeaderAttribute.html
    [AttributeUsage(AttributeTargets.Field)]
    public class HeaderAttribute : PropertyAttribute
    {
        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/HeaderAttribute-ctor.html
        public HeaderAttribute(string header) { }
    }

    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/DisallowMultipleComponent.html
    [AttributeUsage(AttributeTargets.Class)]
    public sealed class DisallowMultipleComponent : Attribute
    {
    }

    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/CreateAssetMenuAttribute.html
    [AttributeUsage(AttributeTargets.Class)]
    public sealed class CreateAssetMenuAttribute : Attribute
    {
        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/CreateAssetMenuAttribute-fileName.html
        public string fileName { get { throw null; } set { } }

        // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/CreateAssetMenuAttribute-menuName.html
        public string menuName { get { throw null; } set { } }
    }
}

namespace UnityEngine.SceneManagement
{
    // https://docs.unity3d.com/6000.0/Documentation/ScriptReference/SceneManagement.Scene.html
    public struct Scene
    {
    }
}
