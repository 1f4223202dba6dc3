// Reference declarations: the ML-Agents API (com.unity.ml-agents 4.0) that
// the Unity side uses, from the package's API reference. Signatures only;
// bodies are stubs. Not ML-Agents' code. Compiled into Unity.ML-Agents.dll by
// tests/test_unity_project.py.

using System;
using Unity.InferenceEngine;
using Unity.MLAgents.Actuators;
using Unity.MLAgents.Policies;
using UnityEngine;

namespace Unity.MLAgents
{
    // https://docs.unity3d.com/Packages/com.unity.ml-agents@4.0/api/Unity.MLAgents.Agent.html
    public partial class Agent : MonoBehaviour
    {
        // https://docs.unity3d.com/Packages/com.unity.ml-agents@4.0/api/Unity.MLAgents.Agent.html#Unity_MLAgents_Agent_MaxStep
        public int MaxStep;

        // https://docs.unity3d.com/Packages/com.unity.ml-agents@4.0/api/Unity.MLAgents.Agent.Initialize.html
        public virtual void Initialize() { }

        // https://docs.unity3d.com/Packages/com.unity.ml-agents@4.0/api/Unity.MLAgents.Agent.OnEpisodeBegin.html
        public virtual void OnEpisodeBegin() { }

        // https://docs.unity3d.com/Packages/com.unity.ml-agents@4.0/api/Unity.MLAgents.Agent.OnActionReceived.html
        public virtual void OnActionReceived(ActionBuffers actions) { }

        // https://docs.unity3d.com/Packages/com.unity.ml-agents@4.0/api/Unity.MLAgents.Agent.Heuristic.html
        public virtual void Heuristic(in ActionBuffers actionsOut) { }

        // https://docs.unity3d.com/Packages/com.unity.ml-agents@4.0/api/Unity.MLAgents.Agent.OnDisable.html
        protected virtual void OnDisable() { }

        // https://docs.unity3d.com/Packages/com.unity.ml-agents@4.0/api/Unity.MLAgents.Agent.EndEpisode.html
        public void EndEpisode() { }

        // https://docs.unity3d.com/Packages/com.unity.ml-agents@4.0/api/Unity.MLAgents.Agent.EpisodeInterrupted.html
        public void EpisodeInterrupted() { }

        // https://docs.unity3d.com/Packages/com.unity.ml-agents@4.0/api/Unity.MLAgents.Agent.AddReward.html
        public void AddReward(float increment) { }

        // https://docs.unity3d.com/Packages/com.unity.ml-agents@4.0/api/Unity.MLAgents.Agent.SetModel.html
        public void SetModel(string behaviorName, ModelAsset model,
                             InferenceDevice inferenceDevice = InferenceDevice.Default) { }
    }

    // https://docs.unity3d.com/Packages/com.unity.ml-agents@4.0/api/Unity.MLAgents.Academy.html
    public class Academy
    {
        // https://docs.unity3d.com/Packages/com.unity.ml-agents@4.0/api/Unity.MLAgents.Academy.Instance.html
        public static Academy Instance { get { throw null; } }

        // https://docs.unity3d.com/Packages/com.unity.ml-agents@4.0/api/Unity.MLAgents.Academy.IsInitialized.html
        public static bool IsInitialized { get { throw null; } }

        // https://docs.unity3d.com/Packages/com.unity.ml-agents@4.0/api/Unity.MLAgents.Academy.IsCommunicatorOn.html
        public bool IsCommunicatorOn { get { throw null; } }

        // https://docs.unity3d.com/Packages/com.unity.ml-agents@4.0/api/Unity.MLAgents.Academy.EnvironmentParameters.html
        public EnvironmentParameters EnvironmentParameters { get { throw null; } }

        // https://docs.unity3d.com/Packages/com.unity.ml-agents@4.0/api/Unity.MLAgents.Academy.AgentPreStep.html
        public event Action<int> AgentPreStep;
    }

    // https://docs.unity3d.com/Packages/com.unity.ml-agents@4.0/api/Unity.MLAgents.EnvironmentParameters.html
    public sealed class EnvironmentParameters
    {
        // https://docs.unity3d.com/Packages/com.unity.ml-agents@4.0/api/Unity.MLAgents.EnvironmentParameters.GetWithDefault.html
        public float GetWithDefault(string key, float defaultValue) { throw null; }

        // https://docs.unity3d.com/Packages/com.unity.ml-agents@4.0/api/Unity.MLAgents.EnvironmentParameters.RegisterCallback.html
        public void RegisterCallback(string key, Action<float> action) { }
    }
}

namespace Unity.MLAgents.Actuators
{
    // https://docs.unity3d.com/Packages/com.unity.ml-agents@4.0/api/Unity.MLAgents.Actuators.ActionBuffers.html
    public readonly struct ActionBuffers
    {
        // https://docs.unity3d.com/Packages/com.unity.ml-agents@4.0/api/Unity.MLAgents.Actuators.ActionBuffers.DiscreteActions.html
        public ActionSegment<int> DiscreteActions { get { throw null; } }
    }

    // https://docs.unity3d.com/Packages/com.unity.ml-agents@4.0/api/Unity.MLAgents.Actuators.ActionSpec.html
    public readonly struct ActionSpec
    {
        // https://docs.unity3d.com/Packages/com.unity.ml-agents@4.0/api/Unity.MLAgents.Actuators.ActionSpec.BranchSizes.html
        public readonly int[] BranchSizes;
    }

    // https://docs.unity3d.com/Packages/com.unity.ml-agents@4.0/api/Unity.MLAgents.Actuators.ActionSegment-1.html
    public readonly struct ActionSegment<T> where T : struct
    {
        // https://docs.unity3d.com/Packages/com.unity.ml-agents@4.0/api/Unity.MLAgents.Actuators.ActionSegment-1.Item.html
        public T this[int index] { get { throw null; } set { } }
    }
}

namespace Unity.MLAgents.Policies
{
    using Unity.MLAgents.Actuators;

    // https://docs.unity3d.com/Packages/com.unity.ml-agents@4.0/api/Unity.MLAgents.Policies.BehaviorParameters.html
    public class BehaviorParameters : MonoBehaviour
    {
        // https://docs.unity3d.com/Packages/com.unity.ml-agents@4.0/api/Unity.MLAgents.Policies.BehaviorParameters.BrainParameters.html
        public BrainParameters BrainParameters { get { throw null; } }

        // https://docs.unity3d.com/Packages/com.unity.ml-agents@4.0/api/Unity.MLAgents.Policies.BehaviorParameters.BehaviorName.html
        public string BehaviorName { get { throw null; } set { } }

        // https://docs.unity3d.com/Packages/com.unity.ml-agents@4.0/api/Unity.MLAgents.Policies.BehaviorParameters.BehaviorType.html
        public BehaviorType BehaviorType { get { throw null; } set { } }
    }

    // https://docs.unity3d.com/Packages/com.unity.ml-agents@4.0/api/Unity.MLAgents.Policies.BrainParameters.html
    public class BrainParameters
    {
        // https://docs.unity3d.com/Packages/com.unity.ml-agents@4.0/api/Unity.MLAgents.Policies.BrainParameters.ActionSpec.html
        public ActionSpec ActionSpec { get { throw null; } set { } }
    }

    // https://docs.unity3d.com/Packages/com.unity.ml-agents@4.0/api/Unity.MLAgents.Policies.BehaviorType.html
    public enum BehaviorType
    {
        Default,
        HeuristicOnly,
        InferenceOnly,
    }

    // https://docs.unity3d.com/Packages/com.unity.ml-agents@4.0/api/Unity.MLAgents.Policies.InferenceDevice.html
    public enum InferenceDevice
    {
        Default = 0,
    }
}

namespace Unity.MLAgents.Sensors
{
    // https://docs.unity3d.com/Packages/com.unity.ml-agents@4.0/api/Unity.MLAgents.Sensors.SensorComponent.html
    public abstract class SensorComponent : MonoBehaviour
    {
    }

    // https://docs.unity3d.com/Packages/com.unity.ml-agents@4.0/api/Unity.MLAgents.Sensors.CameraSensorComponent.html
    public class CameraSensorComponent : SensorComponent
    {
        // https://docs.unity3d.com/Packages/com.unity.ml-agents@4.0/api/Unity.MLAgents.Sensors.CameraSensorComponent.Width.html
        public int Width { get { throw null; } set { } }

        // https://docs.unity3d.com/Packages/com.unity.ml-agents@4.0/api/Unity.MLAgents.Sensors.CameraSensorComponent.Height.html
        public int Height { get { throw null; } set { } }

        // https://docs.unity3d.com/Packages/com.unity.ml-agents@4.0/api/Unity.MLAgents.Sensors.CameraSensorComponent.Grayscale.html
        public bool Grayscale { get { throw null; } set { } }
    }
}

namespace Unity.MLAgents.SideChannels
{
    // https://docs.unity3d.com/Packages/com.unity.ml-agents@4.0/api/Unity.MLAgents.SideChannels.SideChannel.html
    public abstract class SideChannel
    {
        // https://docs.unity3d.com/Packages/com.unity.ml-agents@4.0/api/Unity.MLAgents.SideChannels.SideChannel.ChannelId.html
        public Guid ChannelId { get { throw null; } protected set { } }

        // https://docs.unity3d.com/Packages/com.unity.ml-agents@4.0/api/Unity.MLAgents.SideChannels.SideChannel.OnMessageReceived.html
        protected abstract void OnMessageReceived(IncomingMessage msg);

        // https://docs.unity3d.com/Packages/com.unity.ml-agents@4.0/api/Unity.MLAgents.SideChannels.SideChannel.QueueMessageToSend.html
        protected void QueueMessageToSend(OutgoingMessage msg) { }
    }

    // https://docs.unity3d.com/Packages/com.unity.ml-agents@4.0/api/Unity.MLAgents.SideChannels.SideChannelManager.html
    public static class SideChannelManager
    {
        // https://docs.unity3d.com/Packages/com.unity.ml-agents@4.0/api/Unity.MLAgents.SideChannels.SideChannelManager.RegisterSideChannel.html
        public static void RegisterSideChannel(SideChannel sideChannel) { }

        // https://docs.unity3d.com/Packages/com.unity.ml-agents@4.0/api/Unity.MLAgents.SideChannels.SideChannelManager.UnregisterSideChannel.html
        public static void UnregisterSideChannel(SideChannel sideChannel) { }
    }

    // https://docs.unity3d.com/Packages/com.unity.ml-agents@4.0/api/Unity.MLAgents.SideChannels.OutgoingMessage.html
    public class OutgoingMessage : IDisposable
    {
        // https://docs.unity3d.com/Packages/com.unity.ml-agents@4.0/api/Unity.MLAgents.SideChannels.OutgoingMessage.-ctor.html
        public OutgoingMessage() { }

        // https://docs.unity3d.com/Packages/com.unity.ml-agents@4.0/api/Unity.MLAgents.SideChannels.OutgoingMessage.SetRawBytes.html
        public void SetRawBytes(byte[] data) { }

        // https://docs.unity3d.com/Packages/com.unity.ml-agents@4.0/api/Unity.MLAgents.SideChannels.OutgoingMessage.Dispose.html
        public void Dispose() { }
    }

    // https://docs.unity3d.com/Packages/com.unity.ml-agents@4.0/api/Unity.MLAgents.SideChannels.IncomingMessage.html
    public class IncomingMessage
    {
    }
}
