// Switch an agent's personality while the game runs. Any ML-Agents Agent works, as long as its
// camera sensor and action branches are those the personality was trained for (the card says;
// a personality that does not fit is refused with a warning that says why).
// It starts with the library's first personality that fits; N cycles to the next, B to the
// previous, keys 1-9 pick one, 0 hands the agent to a person (its Heuristic), Tab shows or hides
// a small menu that does the same with the mouse.
// The current personality is always on screen.

using Unity.MLAgents;
using Unity.MLAgents.Policies;
using Unity.MLAgents.Sensors;
using UnityEngine;

namespace AgentAlign
{
    public class PersonalitySwitcher : MonoBehaviour
    {
        [Tooltip("The agent whose personality to switch (any Agent with Behavior Parameters).")]
        public Agent agent;

        [Tooltip("The personalities to offer (a Personality Library asset beside its models).")]
        public PersonalityLibrary library;

        [Tooltip("Where the models run.")]
        public InferenceDevice inferenceDevice = InferenceDevice.Default;

        [Tooltip("Start with the library's first personality that fits the agent.")]
        public bool startWithPersonality = true;

        [Tooltip("Show the menu at start (Tab toggles it).")]
        public bool showMenu = true;

        [Tooltip("Start a new episode on every switch, so each personality starts afresh.")]
        public bool restartEpisodeOnSwitch = true;

        public KeyCode nextKey = KeyCode.N;
        public KeyCode previousKey = KeyCode.B;

        BehaviorParameters m_Behavior;
        PersonalityCycle m_Cycle;
        bool m_WarnedActions;

        public int Count
        {
            get { return library != null ? library.personalities.Count : 0; }
        }

        /// <summary>The personality playing now, or null (the person, or no switch yet).</summary>
        public Personality Current
        {
            get { return m_Cycle != null && m_Cycle.IsPersonality ? library.personalities[m_Cycle.Current] : null; }
        }

        void Awake()
        {
            m_Behavior = agent.GetComponent<BehaviorParameters>();
            m_Cycle = new PersonalityCycle(Count, Fits);
        }

        void Start()
        {
            if (startWithPersonality && !Apply(m_Cycle.SelectFirst()))
                Debug.LogWarning("AgentAlign: no personality in " + (library != null ? library.name : "(no library)") +
                                 " can drive " + agent.name + "; it plays as its Behavior Parameters say.");
        }

        void Update()
        {
            if (Input.GetKeyDown(KeyCode.Tab))
                showMenu = !showMenu;
            if (Input.GetKeyDown(nextKey))
                Apply(m_Cycle.Next());
            if (Input.GetKeyDown(previousKey))
                Apply(m_Cycle.Previous());
            if (Input.GetKeyDown(KeyCode.Alpha0) || Input.GetKeyDown(KeyCode.Keypad0))
                PlayYourself();
            for (int key = 1; key <= 9; key++)
            {
                if (Input.GetKeyDown(KeyCode.Alpha0 + key) || Input.GetKeyDown(KeyCode.Keypad0 + key))
                    Select(key - 1);
            }
            if (!m_WarnedActions && ActionGuard.Replaced > 0)
            {
                m_WarnedActions = true;
                Debug.LogWarning("AgentAlign: a model gave an action index outside its branch; the agent " +
                                 "took the 'none' action instead. Re-export the personality with agentalign.");
            }
        }

        /// <summary>Hand the agent to personality `index` of the library (if it fits).</summary>
        public void Select(int index)
        {
            Apply(m_Cycle.Select(index));
        }

        /// <summary>The next personality that fits the agent, wrapping around.</summary>
        public void Next()
        {
            Apply(m_Cycle.Next());
        }

        /// <summary>Hand the agent to the person at the keyboard or gamepad.</summary>
        public void PlayYourself()
        {
            m_Cycle.PlayYourself();
            m_Behavior.BehaviorType = BehaviorType.HeuristicOnly;
            Restart();
        }

        /// <summary>Why personality `index` cannot drive this agent, or null when it can.</summary>
        public string Misfit(int index)
        {
            Personality personality = library.personalities[index];
            if (personality.model == null)
                return "it has no model (fill the library: AgentAlign > Fill Personality Libraries)";
            var sensor = agent.GetComponentInChildren<CameraSensorComponent>();
            if (sensor == null)
                return "the agent has no camera sensor";
            int[] branches = m_Behavior.BrainParameters.ActionSpec.BranchSizes;
            return PersonalityFit.Problem(personality.ObservationShape, personality.ActionBranches,
                                          sensor.Grayscale ? 1 : 3, sensor.Height, sensor.Width, branches);
        }

        bool Fits(int index)
        {
            string problem = Misfit(index);
            if (problem != null)
                Debug.LogWarning("AgentAlign: personality " + library.personalities[index].Label +
                                 " cannot drive " + agent.name + ": " + problem + ".");
            return problem == null;
        }

        bool Apply(bool changed)
        {
            if (!changed)
                return false;
            Personality personality = Current;
            agent.SetModel(m_Behavior.BehaviorName, personality.model, inferenceDevice);
            m_Behavior.BehaviorType = BehaviorType.InferenceOnly;
            Restart();
            return true;
        }

        void Restart()
        {
            if (restartEpisodeOnSwitch)
                agent.EpisodeInterrupted();
        }

        void OnGUI()
        {
            string now = Current != null ? Current.Label + "  (" + Current.Summary + ")"
                : m_Cycle != null && m_Cycle.Current == PersonalityCycle.Person ? "you (keyboard / gamepad)"
                : "as its Behavior Parameters say";
            var status = agent as IAgentStatus;
            string line = "Playing: " + now + (status != null ? "\n" + status.StatusLine : "");
            GUI.Label(new Rect(8f, Screen.height - 48f, 600f, 44f), line);
            if (!showMenu)
                return;
            float height = 72f + 24f * (Count + 1);
            GUI.Box(new Rect(8f, 8f, 380f, height), "Personalities (" + nextKey + " next, Tab hides this)");
            GUILayout.BeginArea(new Rect(16f, 32f, 364f, height - 28f));
            if (GUILayout.Button(Mark(PersonalityCycle.Person) + "0  Play yourself"))
                PlayYourself();
            for (int i = 0; i < Count; i++)
            {
                Personality personality = library.personalities[i];
                string key = i < 9 ? (i + 1).ToString() : " ";
                if (GUILayout.Button(Mark(i) + key + "  " + personality.Label + "  (" + personality.Summary + ")"))
                    Select(i);
            }
            if (Count == 0)
                GUILayout.Label("No personalities yet: see the package's documentation.");
            GUILayout.EndArea();
        }

        string Mark(int entry)
        {
            return m_Cycle != null && entry == m_Cycle.Current ? "> " : "   ";
        }
    }
}
