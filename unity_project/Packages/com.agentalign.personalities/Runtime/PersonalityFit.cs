// Whether a personality's card fits an agent: the camera it was trained on (channels, height,
// width) and its action branches must be the agent's, or Unity would refuse the model at the
// first decision with a message about tensor shapes. Plain C# (no UnityEngine).

using System.Collections.Generic;

namespace AgentAlign
{
    public static class PersonalityFit
    {
        /// <summary>Why the personality cannot drive the agent, or null when it can.</summary>
        /// <param name="cardObservation">The card's observation shape: channels, height, width.</param>
        /// <param name="cardBranches">The card's discrete branch sizes.</param>
        /// <param name="sensorChannels">The agent camera's channels (1 grayscale, 3 RGB).</param>
        /// <param name="agentBranches">The agent's Behavior Parameters branch sizes.</param>
        public static string Problem(IList<int> cardObservation, IList<int> cardBranches,
                                     int sensorChannels, int sensorHeight, int sensorWidth,
                                     IList<int> agentBranches)
        {
            if (cardObservation == null || cardObservation.Count != 3)
                return "its card has no camera shape (channels, height, width): re-export it";
            if (cardObservation[0] != sensorChannels || cardObservation[1] != sensorHeight ||
                cardObservation[2] != sensorWidth)
                return "it sees " + Shape(cardObservation) + " frames but the agent's camera " +
                       "sensor gives " + sensorChannels + "x" + sensorHeight + "x" + sensorWidth;
            if (agentBranches == null || cardBranches == null || !Same(cardBranches, agentBranches))
                return "it acts on branches " + Shape(cardBranches) + " but the agent's " +
                       "Behavior Parameters have " + Shape(agentBranches);
            return null;
        }

        static bool Same(IList<int> a, IList<int> b)
        {
            if (a.Count != b.Count)
                return false;
            for (int i = 0; i < a.Count; i++)
            {
                if (a[i] != b[i])
                    return false;
            }
            return true;
        }

        static string Shape(IList<int> values)
        {
            if (values == null)
                return "(none)";
            var parts = new string[values.Count];
            for (int i = 0; i < values.Count; i++)
                parts[i] = values[i].ToString();
            return "[" + string.Join(", ", parts) + "]";
        }
    }
}
