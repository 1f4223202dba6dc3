// How a person's input becomes the agent's discrete actions (keyboard and gamepad alike).
// Plain C# (no UnityEngine): JumppadAgent.Heuristic reads the devices and calls these.

using System;

namespace AgentAlign
{
    public static class Controls
    {
        /// <summary>Sticks and WASD below this length move nowhere.</summary>
        public const double DeadZone = 0.5;

        /// <summary>The move branch's value for a direction relative to the facing
        /// (x right, y forward): the nearest of the eight directions, or "none".</summary>
        public static int MoveFromAxes(double x, double y)
        {
            if (x * x + y * y < DeadZone * DeadZone)
                return 0;
            double clockwise = Math.Atan2(x, y) * 180.0 / Math.PI;  // 0 = forward, 90 = right
            double sector = (Math.Round(clockwise / 45.0) % 8 + 8) % 8;
            for (int move = 0; move < SharedSpec.MoveAngles.Length; move++)
            {
                if (SharedSpec.MoveAngles[move] == sector * 45.0)
                    return move;
            }
            return 0;
        }

        /// <summary>The turn branch's value: none when neither or both are held.</summary>
        public static int TurnFromButtons(bool left, bool right)
        {
            if (left == right)
                return 0;
            return left ? 1 : 2;
        }
    }
}
