// A jumppad: its trigger volume, and the disc the agent's rules test (IslandRules.PadAt).

using UnityEngine;

namespace AgentAlign
{
    [DisallowMultipleComponent]
    public class Jumppad : MonoBehaviour
    {
        [Tooltip("0 left, 1 middle, 2 right: the outcome an agent reports on entering this pad.")]
        public int padIndex;

        [Tooltip("Radius in metres: an agent whose centre is within it has entered the pad.")]
        public float radius = 1.6f;

        public string PadName
        {
            get { return padIndex >= 0 && padIndex < SharedSpec.Pads.Length ? SharedSpec.Pads[padIndex] : "?"; }
        }

        // The trigger volume serves other game code (a character with a Rigidbody, say): it is
        // told which pad it entered. The island's agents use the same disc through IslandRules,
        // decision by decision, so that Unity and Python end episodes on the same step.
        void OnTriggerEnter(Collider other)
        {
            other.SendMessageUpwards("OnJumppadEntered", padIndex, SendMessageOptions.DontRequireReceiver);
        }
    }
}
