// The player setting under which a game's camera shows personalities the pixels they were
// trained on: gamma colour space, so flat palette colours reach the camera sensor as the bytes
// agentalign's Python renderer paints (no sRGB/linear round trip). A package must not change a
// project's settings behind its back, so this is a menu item; the development project and its
// headless builds apply it on load (unity_project/Assets/AgentAlign/Editor/DevProject.cs).

using UnityEditor;
using UnityEngine;

namespace AgentAlign.Editor
{
    public static class PersonalityPlayerSettings
    {
        [MenuItem("AgentAlign/Use Gamma Colour Space (as personalities were trained)")]
        public static void UseGammaColourSpace()
        {
            if (PlayerSettings.colorSpace != ColorSpace.Gamma)
                PlayerSettings.colorSpace = ColorSpace.Gamma;
        }
    }
}
