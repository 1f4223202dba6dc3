// Reference declarations: the Inference Engine API (com.unity.ai.inference, which ML-Agents 4.0
// runs its models on) that the Unity side uses. Signatures only; not Unity's
// code. Compiled into Unity.InferenceEngine.dll by tests/unity_csharp.py.

using UnityEngine;

namespace Unity.InferenceEngine
{
    // https://docs.unity3d.com/Packages/com.unity.ai.inference@2.2/api/Unity.InferenceEngine.ModelAsset.html
    // (an imported .onnx file; Agent.SetModel takes one)
    public class ModelAsset : ScriptableObject
    {
    }
}
