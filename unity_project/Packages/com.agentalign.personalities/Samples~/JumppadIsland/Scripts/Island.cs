// The island's geometry and spawn draws. `agentalign unity-scene` writes the fields below from
// the layout file (python/agentalign/envs/layouts/jumppad_island.json); edit the layout and
// regenerate rather than editing them here, or the two islands stop agreeing.

using System;
using Unity.MLAgents;
using UnityEngine;

namespace AgentAlign
{
    [DisallowMultipleComponent]
    public class Island : MonoBehaviour
    {
        [Tooltip("Coastline polygon in layout metres: x east, y north (Unity z).")]
        public Vector2[] coastline = new Vector2[0];

        [Tooltip("Obstacle footprints the agent collides with: x, y = south-west corner, metres.")]
        public Rect[] obstacles = new Rect[0];

        [Tooltip("The three jumppads in outcome order: left, middle, right.")]
        public Jumppad[] jumppads = new Jumppad[0];

        [Tooltip("Spawn points; an episode starts at one of them, facing its rotation.")]
        public Transform[] spawns = new Transform[0];

        [Tooltip("Each spawn is jittered uniformly by up to this many metres on each axis.")]
        public float spawnJitter = 0.5f;

        System.Random m_Spawns = new System.Random();
        int m_PendingSeed = -1;
        // A chosen start (start_* parameters), used by the next DrawStart only.
        float m_StartSpawn = SharedSpec.StartNone;
        float m_StartX = float.NaN, m_StartY = float.NaN, m_StartHeading = float.NaN;

        void Awake()
        {
            // One academy step per decision (DecisionRequester period 1) at 10 decisions per
            // second of game time, whatever the project's physics rate was.
            Time.fixedDeltaTime = 1f / SharedSpec.DecisionsPerSecond;
            Academy.Instance.EnvironmentParameters.RegisterCallback(SharedSpec.SeedParameter,
                                                                    OnSpawnSeed);
            var parameters = Academy.Instance.EnvironmentParameters;
            parameters.RegisterCallback(SharedSpec.StartSpawnParameter, v => m_StartSpawn = v);
            parameters.RegisterCallback(SharedSpec.StartXParameter, v => m_StartX = v);
            parameters.RegisterCallback(SharedSpec.StartYParameter, v => m_StartY = v);
            parameters.RegisterCallback(SharedSpec.StartHeadingParameter,
                                        v => m_StartHeading = v);
        }

        void OnSpawnSeed(float value)
        {
            // Python sends spawn_seed with reset(seed=...); the next episode start reseeds.
            m_PendingSeed = (int)Math.Round(value);
        }

        /// <summary>The rules of this island for an agent of the given size and speeds.</summary>
        public IslandRules CreateRules(float agentRadius, float moveSpeed, float turnRate)
        {
            var rules = new IslandRules(agentRadius, moveSpeed, turnRate);
            foreach (Vector2 point in coastline)
                rules.AddCoastPoint(point.x, point.y);
            foreach (Rect box in obstacles)
                rules.AddObstacle(box.xMin, box.yMin, box.xMax, box.yMax);
            foreach (Jumppad pad in jumppads)
            {
                Vector3 centre = pad.transform.position;
                rules.AddPad(centre.x, centre.z, pad.radius);
            }
            return rules;
        }

        /// <summary>A new episode's start: a random spawn point, jittered, facing its heading;
        /// or the start Python chose with the start_* parameters, once.</summary>
        public AgentState DrawStart()
        {
            if (m_PendingSeed >= 0)
            {
                m_Spawns = new System.Random(m_PendingSeed);
                m_PendingSeed = -1;
            }
            int chosen = (int)Math.Round(m_StartSpawn);
            int index = chosen >= 0 && chosen < spawns.Length ? chosen
                                                              : m_Spawns.Next(spawns.Length);
            Transform spawn = spawns[index];
            Vector3 position = spawn.position;
            double x = position.x + (2.0 * m_Spawns.NextDouble() - 1.0) * spawnJitter;
            double y = position.z + (2.0 * m_Spawns.NextDouble() - 1.0) * spawnJitter;
            if (!float.IsNaN(m_StartX) && !float.IsNaN(m_StartY))
            {
                x = m_StartX;
                y = m_StartY;
            }
            double heading = float.IsNaN(m_StartHeading) ? spawn.eulerAngles.y : m_StartHeading;
            m_StartSpawn = SharedSpec.StartNone;
            m_StartX = m_StartY = m_StartHeading = float.NaN;
            return IslandRules.Start(x, y, heading);
        }

        void OnDrawGizmos()
        {
            Gizmos.color = Color.yellow;
            for (int i = 0; i < coastline.Length; i++)
            {
                Vector2 a = coastline[i], b = coastline[(i + 1) % coastline.Length];
                Gizmos.DrawLine(new Vector3(a.x, 0.05f, a.y), new Vector3(b.x, 0.05f, b.y));
            }
            Gizmos.color = Color.red;
            foreach (Rect box in obstacles)
            {
                Gizmos.DrawWireCube(new Vector3(box.center.x, 0.5f, box.center.y),
                                    new Vector3(box.width, 1f, box.height));
            }
        }
    }
}
