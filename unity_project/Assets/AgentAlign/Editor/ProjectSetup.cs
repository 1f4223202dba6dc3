// Player settings the island needs, applied whenever the editor loads and before every build,
// so that no settings file has to be committed for them:
// - gamma colour space: the flat palette colours reach the camera sensor as the same bytes the
//   Python renderer paints (no sRGB/linear round trip);
// - run in background, windowed and resizable: a headless player under Xvfb keeps stepping.

using UnityEditor;
using UnityEngine;

namespace AgentAlign.Editor
{
    [InitializeOnLoad]
    public static class ProjectSetup
    {
        static ProjectSetup()
        {
            Apply();
        }

        public static void Apply()
        {
            if (PlayerSettings.colorSpace != ColorSpace.Gamma)
                PlayerSettings.colorSpace = ColorSpace.Gamma;
            if (!PlayerSettings.runInBackground)
                PlayerSettings.runInBackground = true;
            if (PlayerSettings.fullScreenMode != FullScreenMode.Windowed)
                PlayerSettings.fullScreenMode = FullScreenMode.Windowed;
            if (!PlayerSettings.resizableWindow)
                PlayerSettings.resizableWindow = true;
            if (PlayerSettings.defaultScreenWidth != 512)
                PlayerSettings.defaultScreenWidth = 512;
            if (PlayerSettings.defaultScreenHeight != 512)
                PlayerSettings.defaultScreenHeight = 512;
            if (PlayerSettings.productName != "JumppadIsland")
                PlayerSettings.productName = "JumppadIsland";
        }
    }
}
