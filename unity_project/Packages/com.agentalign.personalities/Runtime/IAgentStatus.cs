// What an agent may tell the personality switcher to show under the current personality (for
// the island: the decision and how the episode stands). Optional: any Agent can be switched.

namespace AgentAlign
{
    public interface IAgentStatus
    {
        /// <summary>One short line, e.g. "Decision 12 of 100, running".</summary>
        string StatusLine { get; }
    }
}
