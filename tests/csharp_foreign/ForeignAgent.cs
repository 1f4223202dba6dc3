// A game's own agent, nothing like the island's: it uses the package's switcher, library, fit
// check and action guard with only ML-Agents and the package's Runtime assembly referenced
// (tests/unity_csharp.py compiles it so). If the Runtime assembly ever needs the sample's
// scripts, or the switcher only takes the island's agent, this stops compiling.

using AgentAlign;
using Unity.MLAgents;
using Unity.MLAgents.Actuators;
using UnityEngine;

namespace SomeStudio.Game
{
    public class GuardAgent : Agent, IAgentStatus
    {
        static readonly int[] Branches = { 5, 2 };
        int m_Patrol;

        public string StatusLine
        {
            get { return "Patrol point " + m_Patrol; }
        }

        public override void OnActionReceived(ActionBuffers actions)
        {
            m_Patrol = ActionGuard.InRange(actions.DiscreteActions[0], Branches[0]);
        }
    }

    public class GuardSetup : MonoBehaviour
    {
        public GuardAgent guard;
        public PersonalityLibrary library;

        void Start()
        {
            var switcher = gameObject.AddComponent<PersonalitySwitcher>();
            switcher.agent = guard;
            switcher.library = library;
            switcher.Next();
            Personality now = switcher.Current;
            if (now != null && PersonalityFit.Problem(now.ObservationShape, now.ActionBranches, 3, 84, 84, new[] { 5, 2 }) != null)
                switcher.PlayYourself();
        }
    }
}
