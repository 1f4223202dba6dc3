// The island's rules, decision by decision, written exactly as python/agentalign/envs/island.py
// does them, in doubles, so both islands move an agent the same way for the same actions
// (tests/test_unity_project.py runs this file under Mono against the Python island).
// Plain C# (no UnityEngine): coordinates are the layout's, metres with x east and y north.

using System;
using System.Collections.Generic;

namespace AgentAlign
{
    /// <summary>Where an agent is and how its episode stands.</summary>
    public struct AgentState
    {
        public double X;
        public double Y;
        public double Heading;  // degrees clockwise from north, in [0, 360)
        public int Step;        // decisions taken in this episode
        public int Outcome;     // SharedSpec.Running, or the code of how the episode ended
    }

    public sealed class IslandRules
    {
        struct Box
        {
            public double LoX, LoY, HiX, HiY;
        }

        struct Disc
        {
            public double X, Y, Radius;
        }

        const double DegreesToRadians = Math.PI / 180.0;

        readonly List<double> m_CoastX = new List<double>();
        readonly List<double> m_CoastY = new List<double>();
        readonly List<Box> m_Obstacles = new List<Box>();
        readonly List<Disc> m_Pads = new List<Disc>();

        public readonly double AgentRadius;
        public readonly double StepLength;  // metres per decision
        public readonly double TurnStep;    // degrees per decision
        public readonly int MaxDecisions;

        public IslandRules(double agentRadius, double moveSpeed, double turnRate,
                           int maxDecisions = SharedSpec.MaxDecisions)
        {
            AgentRadius = agentRadius;
            StepLength = moveSpeed / SharedSpec.DecisionsPerSecond;
            TurnStep = turnRate / SharedSpec.DecisionsPerSecond;
            MaxDecisions = maxDecisions;
        }

        public void AddCoastPoint(double x, double y)
        {
            m_CoastX.Add(x);
            m_CoastY.Add(y);
        }

        public void AddObstacle(double loX, double loY, double hiX, double hiY)
        {
            m_Obstacles.Add(new Box { LoX = loX, LoY = loY, HiX = hiX, HiY = hiY });
        }

        /// <summary>Pads are added in outcome order: left, middle, right.</summary>
        public void AddPad(double x, double y, double radius)
        {
            m_Pads.Add(new Disc { X = x, Y = y, Radius = radius });
        }

        public int PadCount { get { return m_Pads.Count; } }

        /// <summary>A new episode at (x, y) facing `heading`.</summary>
        public static AgentState Start(double x, double y, double heading)
        {
            return new AgentState
            {
                X = x, Y = y, Heading = Mod360(heading), Step = 0, Outcome = SharedSpec.Running,
            };
        }

        /// <summary>One decision: turn, then move relative to the new facing, sliding along
        /// obstacles one axis at a time; then decide whether the episode has ended.</summary>
        public void Step(ref AgentState state, int move, int turn)
        {
            if (move < 0 || move >= SharedSpec.ActionBranches[SharedSpec.MoveBranch])
                throw new ArgumentOutOfRangeException("move", move, "no such move");
            if (turn < 0 || turn >= SharedSpec.ActionBranches[SharedSpec.TurnBranch])
                throw new ArgumentOutOfRangeException("turn", turn, "no such turn");
            state.Heading = Mod360(state.Heading + SharedSpec.TurnSigns[turn] * TurnStep);
            double moveAngle = SharedSpec.MoveAngles[move];
            double length = double.IsNaN(moveAngle) ? 0.0 : StepLength;
            double angle = state.Heading * DegreesToRadians
                           + (double.IsNaN(moveAngle) ? 0.0 : moveAngle) * DegreesToRadians;
            double nx = state.X + Math.Sin(angle) * length;
            if (!Blocked(nx, state.Y))
                state.X = nx;
            double ny = state.Y + Math.Cos(angle) * length;
            if (!Blocked(state.X, ny))
                state.Y = ny;
            state.Step += 1;
            state.Outcome = OutcomeAt(state.X, state.Y, state.Step);
        }

        /// <summary>How an episode stands at (x, y) after `step` decisions: a pad first, then
        /// off the island, then out of time.</summary>
        public int OutcomeAt(double x, double y, int step)
        {
            int pad = PadAt(x, y);
            if (pad >= 0)
                return pad;
            if (!IsOnIsland(x, y))
                return SharedSpec.OutcomeFell;
            if (step >= MaxDecisions)
                return SharedSpec.OutcomeTimeout;
            return SharedSpec.Running;
        }

        /// <summary>The first pad whose disc holds (x, y), or -1.</summary>
        public int PadAt(double x, double y)
        {
            for (int i = 0; i < m_Pads.Count; i++)
            {
                double dx = x - m_Pads[i].X, dy = y - m_Pads[i].Y;
                if (Math.Sqrt(dx * dx + dy * dy) <= m_Pads[i].Radius)
                    return i;
            }
            return -1;
        }

        /// <summary>Point in the coastline polygon, even-odd rule (as Layout.is_on_island).
        /// The Python island tests the centre of the 1/8 m raster cell under the agent instead,
        /// so the two can disagree within a cell of the coast.</summary>
        public bool IsOnIsland(double x, double y)
        {
            bool inside = false;
            int n = m_CoastX.Count;
            for (int i = 0; i < n; i++)
            {
                double x1 = m_CoastX[i], y1 = m_CoastY[i];
                double x2 = m_CoastX[(i + 1) % n], y2 = m_CoastY[(i + 1) % n];
                if ((y1 > y) != (y2 > y))
                {
                    double xAt = x1 + (y - y1) * (x2 - x1) / (y2 - y1);
                    if (x < xAt)
                        inside = !inside;
                }
            }
            return inside;
        }

        /// <summary>Whether the agent's disc at (x, y) overlaps an obstacle box.</summary>
        public bool Blocked(double x, double y)
        {
            double r2 = AgentRadius * AgentRadius;
            foreach (Box box in m_Obstacles)
            {
                double cx = Math.Min(Math.Max(x, box.LoX), box.HiX);
                double cy = Math.Min(Math.Max(y, box.LoY), box.HiY);
                double gap = (x - cx) * (x - cx) + (y - cy) * (y - cy);
                if (gap < r2)
                    return true;
            }
            return false;
        }

        /// <summary>Degrees in [0, 360), as Python's float modulo gives them.</summary>
        public static double Mod360(double degrees)
        {
            double r = degrees % 360.0;
            return r < 0 ? r + 360.0 : r;
        }
    }
}
