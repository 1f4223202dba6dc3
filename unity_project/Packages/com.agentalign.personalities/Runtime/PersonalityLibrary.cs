// The personalities a designer can switch between: ONNX files from `agentalign export`, each
// with its card (<name>.onnx + <name>.json). An asset of its own, kept in the folder of its
// models, so adding a personality never touches a scene. The package's editor code fills it
// from that folder whenever models there are imported, and once when the editor loads, so its
// references resolve on first open without anyone clicking a menu (PersonalityLibraryFiller).

using System;
using System.Collections.Generic;
using Unity.InferenceEngine;
using UnityEngine;

namespace AgentAlign
{
    [Serializable]
    public class Personality
    {
        [Tooltip("Shown in the switcher; empty = the card's name, else the model's file name.")]
        public string name;

        [Tooltip("The exported policy: <name>.onnx, in ML-Agents' inference contract.")]
        public ModelAsset model;

        [Tooltip("Its card, <name>.json: stage, target, the spec it was trained for, rates.")]
        public TextAsset card;

        // The fields of the card the switcher reads; JsonUtility fills them.
#pragma warning disable 0649
        [Serializable]
        class ObservationField
        {
            public int[] shape;
        }

        [Serializable]
        class ActionFields
        {
            public int[] discrete_branches;
        }

        [Serializable]
        class CardFields
        {
            public string name;
            public string stage;
            public string target;
            public ObservationField[] observation_spec;
            public ActionFields action_spec;
        }
#pragma warning restore 0649

        CardFields m_Fields;

        CardFields Fields
        {
            get
            {
                if (m_Fields == null)
                {
                    m_Fields = card != null ? JsonUtility.FromJson<CardFields>(card.text) : null;
                    if (m_Fields == null)
                        m_Fields = new CardFields();
                }
                return m_Fields;
            }
        }

        public string Label
        {
            get
            {
                if (!string.IsNullOrEmpty(name))
                    return name;
                if (!string.IsNullOrEmpty(Fields.name))
                    return Fields.name;
                return model != null ? model.name : "(no model)";
            }
        }

        /// <summary>One line from the card, e.g. "rl, target left".</summary>
        public string Summary
        {
            get
            {
                string stage = string.IsNullOrEmpty(Fields.stage) ? "?" : Fields.stage;
                string target = string.IsNullOrEmpty(Fields.target) ? "no target" : "target " + Fields.target;
                return stage + ", " + target;
            }
        }

        /// <summary>The camera the personality was trained on (channels, height, width), or
        /// null without a card.</summary>
        public int[] ObservationShape
        {
            get
            {
                ObservationField[] spec = Fields.observation_spec;
                return spec != null && spec.Length > 0 ? spec[0].shape : null;
            }
        }

        /// <summary>Its discrete action branch sizes, or null without a card.</summary>
        public int[] ActionBranches
        {
            get { return Fields.action_spec != null ? Fields.action_spec.discrete_branches : null; }
        }
    }

    [CreateAssetMenu(fileName = "Personalities", menuName = "AgentAlign/Personality Library")]
    public class PersonalityLibrary : ScriptableObject
    {
        public List<Personality> personalities = new List<Personality>();

        /// <summary>True while an entry has no model: the editor fills the library then.</summary>
        public bool NeedsFilling
        {
            get
            {
                if (personalities.Count == 0)
                    return true;
                foreach (Personality personality in personalities)
                {
                    if (personality.model == null)
                        return true;
                }
                return false;
            }
        }
    }
}
