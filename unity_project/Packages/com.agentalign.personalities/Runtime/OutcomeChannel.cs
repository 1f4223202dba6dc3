// The outcome side channel (agentalign.spec.OUTCOME_CHANNEL_ID): where each agent is and how its
// episode stands, sent to Python with every exchange, because ML-Agents' own messages carry
// neither. One channel serves every agent in the scene; the records of one academy step go out
// as one message, in the order they were made (an ended episode's record before its successor's).

using System;
using System.Collections.Generic;
using Unity.MLAgents;
using Unity.MLAgents.SideChannels;
using UnityEngine;

namespace AgentAlign
{
    public sealed class OutcomeChannel : SideChannel
    {
        static OutcomeChannel s_Instance;
        static int s_Users;

        readonly List<OutcomeRecord> m_Pending = new List<OutcomeRecord>();

        OutcomeChannel()
        {
            ChannelId = new Guid(SharedSpec.OutcomeChannelId);
        }

        /// <summary>Register the channel (once, for the first agent that asks).</summary>
        public static void Acquire()
        {
            if (s_Instance == null)
            {
                s_Instance = new OutcomeChannel();
                SideChannelManager.RegisterSideChannel(s_Instance);
                Academy.Instance.AgentPreStep += s_Instance.Flush;
            }
            s_Users++;
        }

        /// <summary>Unregister the channel when the last agent is gone.</summary>
        public static void Release()
        {
            if (s_Instance == null)
                return;
            s_Users--;
            if (s_Users > 0)
                return;
            if (Academy.IsInitialized)
                Academy.Instance.AgentPreStep -= s_Instance.Flush;
            SideChannelManager.UnregisterSideChannel(s_Instance);
            s_Instance = null;
            s_Users = 0;
        }

        public static void Report(OutcomeRecord record)
        {
            // Without a trainer connected nothing would ever drain the queue: keep nothing.
            if (s_Instance == null || !Academy.Instance.IsCommunicatorOn)
                return;
            s_Instance.m_Pending.Add(record);
        }

        // Called at the start of each academy step, before the agents send their observations:
        // the records made while acting on the last decision (and at episode starts) travel
        // with the observations of the same states.
        void Flush(int academyStepCount)
        {
            if (m_Pending.Count == 0)
                return;
            using (var message = new OutgoingMessage())
            {
                message.SetRawBytes(OutcomeRecords.Encode(m_Pending));
                QueueMessageToSend(message);
            }
            m_Pending.Clear();
        }

        protected override void OnMessageReceived(IncomingMessage msg)
        {
            Debug.LogWarning("AgentAlign outcome channel: Python sent a message on a channel " +
                             "that only reports; it was ignored.");
        }
    }
}
