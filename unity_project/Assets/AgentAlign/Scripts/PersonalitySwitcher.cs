// Switch the agent's personality while the game runs: keys 1-9 pick a personality from the
// library (Agent.SetModel), 0 hands the agent to a person (keyboard or gamepad, the Heuristic),
// Tab shows or hides a small on-screen menu that does the same with the mouse.

using Unity.MLAgents.Policies;
using UnityEngine;

namespace AgentAlign
{
    public class PersonalitySwitcher : MonoBehaviour
    {
        const int AsConfigured = -1;  // whatever the agent's Behavior Parameters say
        const int Person = -2;

        [Tooltip("The agent whose personality to switch.")]
        public JumppadAgent agent;

        [Tooltip("The personalities to offer (Assets/AgentAlign/Models/Personalities.asset).")]
        public PersonalityLibrary library;

        [Tooltip("Where the models run.")]
        public InferenceDevice inferenceDevice = InferenceDevice.Default;

        [Tooltip("Show the menu at start (Tab toggles it).")]
        public bool showMenu = true;

        [Tooltip("Start a new episode on every switch, so each personality starts at a spawn.")]
        public bool restartEpisodeOnSwitch = true;

        BehaviorParameters m_Behavior;
        int m_Current = AsConfigured;

        public int Count
        {
            get { return library != null ? library.personalities.Count : 0; }
        }

        void Awake()
        {
            m_Behavior = agent.GetComponent<BehaviorParameters>();
        }

        void Update()
        {
            if (Input.GetKeyDown(KeyCode.Tab))
                showMenu = !showMenu;
            if (Input.GetKeyDown(KeyCode.Alpha0) || Input.GetKeyDown(KeyCode.Keypad0))
                PlayYourself();
            for (int key = 1; key <= 9; key++)
            {
                if (Input.GetKeyDown(KeyCode.Alpha0 + key) || Input.GetKeyDown(KeyCode.Keypad0 + key))
                    Select(key - 1);
            }
        }

        /// <summary>Hand the agent to personality `index` of the library.</summary>
        public void Select(int index)
        {
            if (index < 0 || index >= Count)
                return;
            Personality personality = library.personalities[index];
            if (personality.model == null)
            {
                Debug.LogWarning("AgentAlign: personality " + personality.Label + " has no model.");
                return;
            }
            agent.SetModel(SharedSpec.BehaviorName, personality.model, inferenceDevice);
            m_Behavior.BehaviorType = BehaviorType.InferenceOnly;
            m_Current = index;
            Restart();
        }

        /// <summary>Hand the agent to the person at the keyboard or gamepad.</summary>
        public void PlayYourself()
        {
            m_Behavior.BehaviorType = BehaviorType.HeuristicOnly;
            m_Current = Person;
            Restart();
        }

        void Restart()
        {
            if (restartEpisodeOnSwitch)
                agent.EpisodeInterrupted();
        }

        void OnGUI()
        {
            if (!showMenu)
                return;
            float height = 96f + 24f * (Count + 1);
            GUI.Box(new Rect(8f, 8f, 360f, height), "Personalities (Tab hides this)");
            GUILayout.BeginArea(new Rect(16f, 32f, 344f, height - 28f));
            if (GUILayout.Button(Mark(Person) + "0  Play yourself: WASD / left stick, Q E / bumpers"))
                PlayYourself();
            for (int i = 0; i < Count; i++)
            {
                Personality personality = library.personalities[i];
                string key = i < 9 ? (i + 1).ToString() : " ";
                string label = Mark(i) + key + "  " + personality.Label + "  (" + personality.Summary + ")";
                if (GUILayout.Button(label))
                    Select(i);
            }
            if (Count == 0)
                GUILayout.Label("No personalities yet: see docs/unity_project.md.");
            AgentState state = agent.State;
            string outcome = state.Outcome == SharedSpec.Running ? "running" : SharedSpec.Outcomes[state.Outcome];
            GUILayout.Label("Decision " + state.Step + " of " + SharedSpec.MaxDecisions + ", " + outcome);
            GUILayout.EndArea();
        }

        string Mark(int entry)
        {
            return entry == m_Current ? "> " : "   ";
        }
    }
}
