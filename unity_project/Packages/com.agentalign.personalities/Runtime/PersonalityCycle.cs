// Which personality drives the agent, as the switcher's keys change it: a library entry, the
// person at the keyboard, or whatever the agent's Behavior Parameters say. Plain C# (no
// UnityEngine), so the switcher's rules run under Mono in the repository's tests.

using System;

namespace AgentAlign
{
    public sealed class PersonalityCycle
    {
        /// <summary>The agent plays as its Behavior Parameters say (before any switch).</summary>
        public const int AsConfigured = -1;

        /// <summary>The person at the keyboard or gamepad plays (the agent's Heuristic).</summary>
        public const int Person = -2;

        readonly Func<int, bool> m_Playable;

        /// <param name="count">Entries in the library.</param>
        /// <param name="playable">Whether entry i can drive the agent (it has a model whose
        /// spec fits the agent); entries that cannot are never chosen.</param>
        public PersonalityCycle(int count, Func<int, bool> playable)
        {
            if (count < 0)
                throw new ArgumentOutOfRangeException("count", "count must be >= 0");
            Count = count;
            m_Playable = playable ?? (i => true);
            Current = AsConfigured;
        }

        public int Count { get; private set; }

        /// <summary>A library index, <see cref="Person"/> or <see cref="AsConfigured"/>.</summary>
        public int Current { get; private set; }

        public bool IsPersonality
        {
            get { return Current >= 0; }
        }

        public bool IsPlayable(int index)
        {
            return index >= 0 && index < Count && m_Playable(index);
        }

        /// <summary>Entry `index`, if it can play; false leaves the current one playing.</summary>
        public bool Select(int index)
        {
            if (!IsPlayable(index))
                return false;
            Current = index;
            return true;
        }

        /// <summary>The first playable entry (at start); false when none can play.</summary>
        public bool SelectFirst()
        {
            return Step(-1, 1);
        }

        /// <summary>The next playable entry after the current one, wrapping around; from the
        /// person or the configured behaviour, the first. False (nothing changes) when none can
        /// play.</summary>
        public bool Next()
        {
            return Step(IsPersonality ? Current : -1, 1);
        }

        /// <summary>The playable entry before the current one, wrapping around.</summary>
        public bool Previous()
        {
            return Step(IsPersonality ? Current : Count, -1);
        }

        public void PlayYourself()
        {
            Current = Person;
        }

        bool Step(int from, int direction)
        {
            for (int k = 1; k <= Count; k++)
            {
                int index = ((from + direction * k) % Count + Count) % Count;
                if (Select(index))
                    return true;
            }
            return false;
        }
    }
}
