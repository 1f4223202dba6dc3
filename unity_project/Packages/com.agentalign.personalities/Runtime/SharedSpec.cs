// The contract shared with Python, mirrored from python/agentalign/spec.py.
// tests/test_unity_project.py reads this file and fails while the two differ: change spec.py
// first, then this file, then regenerate the scene (agentalign unity-scene).
// Plain C# (no UnityEngine), so the island's rules can be compiled and checked outside Unity.

namespace AgentAlign
{
    public static class SharedSpec
    {
        // Observation: RGB pixels from the third-person camera, height x width x channels.
        public const int ObsHeight = 64;
        public const int ObsWidth = 64;
        public const int ObsChannels = 3;

        // Actions: ML-Agents discrete branches. Branch 0 moves relative to the facing, branch 1 turns.
        public static readonly int[] ActionBranches = { 9, 3 };
        public const int MoveBranch = 0;
        public const int TurnBranch = 1;
        public static readonly string[] MoveNames =
        {
            "none", "forward", "forward_right", "right", "back_right",
            "back", "back_left", "left", "forward_left",
        };
        // Direction of each move, degrees clockwise from the facing direction (NaN for "none").
        public static readonly double[] MoveAngles =
            { double.NaN, 0.0, 45.0, 90.0, 135.0, 180.0, 225.0, 270.0, 315.0 };
        public static readonly string[] TurnNames = { "none", "left", "right" };
        // Heading is clockwise, so turning left lowers it.
        public static readonly int[] TurnSigns = { 0, -1, 1 };

        // Outcomes: how an episode ended; codes are indices into Outcomes.
        public static readonly string[] Pads = { "left", "middle", "right" };
        public static readonly string[] Outcomes = { "left", "middle", "right", "fell", "timeout" };
        public const int OutcomeFell = 3;
        public const int OutcomeTimeout = 4;
        public const int Running = -1;

        // Timing: 10 decisions per second, at most 100 decisions (10 s) per episode.
        public const int DecisionsPerSecond = 10;
        public const int MaxDecisions = 100;

        // The engine link.
        public const string BehaviorName = "JumppadAgent";
        public const string CameraSensorName = "CameraSensor";
        // Environment parameter choosing the rewarded pad: its index in Pads, or NoTarget.
        public const string TargetParameter = "target_pad";
        public const float NoTarget = -1f;
        // Environment parameter reseeding the spawn draws at the next episode start; the float
        // holds the seed modulo SeedModulus (exact in float32).
        public const string SeedParameter = "spawn_seed";
        public const int SeedModulus = 16777216;
        // Environment parameters choosing where the episode begun by the next reset starts (an
        // evaluation's chosen starts); used once, at that reset. Spawn index (StartNone = the
        // game's own draw), x and y in layout metres and heading in degrees clockwise from north
        // (NaN = the spawn's jittered point, the spawn's heading).
        public const string StartSpawnParameter = "start_spawn";
        public const string StartXParameter = "start_x";
        public const string StartYParameter = "start_y";
        public const string StartHeadingParameter = "start_heading";
        public const float StartNone = -1f;

        // Outcome side channel: after every decision (and at every episode start) each agent
        // reports int32 agent_id, int32 step, float32 x, float32 y, float32 heading,
        // int32 outcome; a message is int32 count followed by the records, little-endian.
        public const string OutcomeChannelId = "7c8c49a6-1a84-4165-8a1a-0a382b9097ef";
        public const string OutcomeRecordFormat = "<iifffi";  // Python struct notation
        public const int OutcomeRecordBytes = 24;
    }
}
