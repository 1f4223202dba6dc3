// The island's agent. It sees through the camera sensor on its CameraRig (64x64 RGB, PNG),
// acts on ML-Agents discrete branches [9, 3] (SharedSpec: move relative to the facing, turn),
// moves by the island's rules decision by decision (IslandRules, as the Python island does),
// ends an episode on a pad, off the island or after 100 decisions, and reports where it is and
// how its episode stands on the outcome side channel. A person can play it (Heuristic) and
// record the play with the DemonstrationRecorder on the same GameObject.

using System;
using System.Reflection;
using Unity.MLAgents;
using Unity.MLAgents.Actuators;
using UnityEngine;

namespace AgentAlign
{
    public class JumppadAgent : Agent, IAgentStatus
    {
        const int NoPad = -1;

        [Tooltip("The island this agent plays on.")]
        public Island island;

        [Header("From the layout's agent block (written by agentalign unity-scene)")]
        [Tooltip("Metres per second; the agent moves speed / 10 metres per decision.")]
        public float moveSpeed = 5f;

        [Tooltip("Degrees per second; the agent turns rate / 10 degrees per decision.")]
        public float turnRate = 100f;

        [Tooltip("Collision radius in metres (obstacles).")]
        public float radius = 0.4f;

        IslandRules m_Rules;
        AgentState m_State;
        int m_AgentId;

        /// <summary>Where the agent is and how its episode stands, in layout coordinates.</summary>
        public AgentState State
        {
            get { return m_State; }
        }

        /// <summary>The decision and how the episode stands, for the personality switcher.</summary>
        public string StatusLine
        {
            get
            {
                string outcome = m_State.Outcome == SharedSpec.Running ? "running" : SharedSpec.Outcomes[m_State.Outcome];
                return "Decision " + m_State.Step + " of " + SharedSpec.MaxDecisions + ", " + outcome;
            }
        }

        public override void Initialize()
        {
            m_Rules = island.CreateRules(radius, moveSpeed, turnRate);
            // ML-Agents' MaxStep counts academy steps; the episode length is ours (100 decisions).
            MaxStep = 0;
            OutcomeChannel.Acquire();
        }

        protected override void OnDisable()
        {
            base.OnDisable();
            OutcomeChannel.Release();
        }

        public override void OnEpisodeBegin()
        {
            m_AgentId = AgentIds.Of(this);
            m_State = island.DrawStart();
            Place();
            Report();
        }

        public override void OnActionReceived(ActionBuffers actions)
        {
            ActionSegment<int> discrete = actions.DiscreteActions;
            // An index outside its branch (a sampler's edge case, see ActionGuard) never moves us.
            int move = ActionGuard.InRange(discrete[SharedSpec.MoveBranch],
                                           SharedSpec.ActionBranches[SharedSpec.MoveBranch]);
            int turn = ActionGuard.InRange(discrete[SharedSpec.TurnBranch],
                                           SharedSpec.ActionBranches[SharedSpec.TurnBranch]);
            m_Rules.Step(ref m_State, move, turn);
            Place();
            Report();  // before the episode ends: the record carries this episode's id and outcome
            int outcome = m_State.Outcome;
            if (outcome == SharedSpec.Running)
                return;
            if (outcome == TargetPad())
                AddReward(1f);
            if (outcome == SharedSpec.OutcomeTimeout)
                EpisodeInterrupted();  // Python sees a truncation, as from the island's timeout
            else
                EndEpisode();
        }

        public override void Heuristic(in ActionBuffers actionsOut)
        {
            ActionSegment<int> discrete = actionsOut.DiscreteActions;
            // WASD, the arrow keys and a gamepad's left stick (Unity's default "Horizontal" and
            // "Vertical" axes) move relative to the facing; Q/E and the shoulder buttons turn.
            discrete[SharedSpec.MoveBranch] = Controls.MoveFromAxes(
                Input.GetAxisRaw("Horizontal"), Input.GetAxisRaw("Vertical"));
            bool left = Input.GetKey(KeyCode.Q) || Input.GetKey(KeyCode.JoystickButton4);
            bool right = Input.GetKey(KeyCode.E) || Input.GetKey(KeyCode.JoystickButton5);
            discrete[SharedSpec.TurnBranch] = Controls.TurnFromButtons(left, right);
        }

        /// <summary>The pad the designer rewards (environment parameter target_pad), or -1.</summary>
        static int TargetPad()
        {
            float value = Academy.Instance.EnvironmentParameters.GetWithDefault(
                SharedSpec.TargetParameter, SharedSpec.NoTarget);
            int pad = (int)Math.Round(value);
            return pad >= 0 && pad < SharedSpec.Pads.Length ? pad : NoPad;
        }

        void Place()
        {
            transform.position = new Vector3((float)m_State.X, 0f, (float)m_State.Y);
            transform.rotation = Quaternion.Euler(0f, (float)m_State.Heading, 0f);
        }

        void Report()
        {
            OutcomeChannel.Report(new OutcomeRecord
            {
                AgentId = m_AgentId,
                Step = m_State.Step,
                X = (float)m_State.X,
                Y = (float)m_State.Y,
                Heading = (float)m_State.Heading,
                Outcome = m_State.Outcome,
            });
        }
    }

    /// <summary>The id Python knows an agent by. ML-Agents sends it as the agent's episode id
    /// (Agent.m_EpisodeId) but keeps the field private, and the outcome records must carry the
    /// same number, so it is read by reflection; if a future package renames the field, records
    /// fall back to the instance id and a warning says so.</summary>
    static class AgentIds
    {
        static readonly FieldInfo s_EpisodeId =
            typeof(Agent).GetField("m_EpisodeId", BindingFlags.Instance | BindingFlags.NonPublic);

        static bool s_Warned;

        public static int Of(Agent agent)
        {
            if (s_EpisodeId != null && s_EpisodeId.FieldType == typeof(int))
                return (int)s_EpisodeId.GetValue(agent);
            if (!s_Warned)
            {
                Debug.LogWarning("AgentAlign: Agent.m_EpisodeId not found in this ML-Agents " +
                                 "package; outcome records use instance ids that Python cannot " +
                                 "match to its agents.");
                s_Warned = true;
            }
            return agent.GetInstanceID();
        }
    }
}
