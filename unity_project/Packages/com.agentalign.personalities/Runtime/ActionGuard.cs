// The last line of defence between a model's action output and an agent: an index outside its
// branch never reaches the game. The Inference Engine's CPU Multinomial (com.unity.ai.inference
// 2.2.1) returns -1 when its uniform draw is exactly 0.0; graphs exported by agentalign already
// replace such a draw with the branch's deterministic (argmax) action inside the graph, so this
// only fires for files exported before that, or by other tools. Plain C# (no UnityEngine).

namespace AgentAlign
{
    public static class ActionGuard
    {
        /// <summary>What an out-of-range index becomes: 0, the "none" action of every branch of
        /// the island's spec (no move, no turn).</summary>
        public const int Fallback = 0;

        /// <summary>Out-of-range indices replaced since the game started (a game may warn once).</summary>
        public static int Replaced { get; private set; }

        /// <summary>`action` when it is an index of a branch of `branchSize` actions, else
        /// <see cref="Fallback"/>.</summary>
        public static int InRange(int action, int branchSize)
        {
            if (action >= 0 && action < branchSize)
                return action;
            Replaced++;
            return Fallback;
        }
    }
}
